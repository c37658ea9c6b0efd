#!/usr/bin/env bash
# bench/deliver.sh [N] - mail-deliver next to procmail, maildrop, safecat, fdm
# and dovecot-lda, measured the same way in one run.
#
#   bench/deliver.sh            # N=1000 messages, a 10,000-message mbox for --split
#   bench/deliver.sh 200        # quicker
#
# What it does (all data under $BENCH_DIR, default /var/tmp/postline-bench):
#   1. Generates N deterministic messages (bench/genmsg.py, 2-8 KB bodies, some
#      body lines starting "From " / ">From ") and one mboxrd file of SPLIT_N
#      messages (the first N of which are the same messages).
#   2. Compiles bench/each.c (one posix_spawn + wait per message, the file on
#      stdin) and bench/fsyncbench.c with gcc.
#   3. Machine limits: spawn floor, 4 KB write/fsync/rename costs, dd bandwidth.
#   4. With hyperfine (--runs RUNS, --prepare resetting the destination and
#      syncing, --export-json), one process per message into a Maildir and
#      into an mbox (locked), then mail-deliver --split of the big mbox against
#      one process per message for the same messages and against peers that
#      read an mbox in one go (formail -s procmail, fdm's mbox account). The
#      set is run ROUNDS times in rotated order, so the disk's drift (it
#      changes speed 2-4x over minutes) is spread over all tools instead of
#      hitting whichever ran at a bad moment; the median is over all runs.
#   5. Checks every run: the destination must hold exactly the messages sent.
#      Old destinations are moved into $BENCH_DIR/trash, not deleted, between
#      runs: on an ext4 without a journal (this machine) creating files right
#      after deleting thousands is several times slower (the inode allocator
#      skips recently deleted inodes one by one), which would penalise
#      whichever case ran after a big delete. The trash is emptied at the end.
#   6. Notes per tool from one probe delivery: fsync-family calls and all
#      syscalls (strace -f -c), peak RSS (/usr/bin/time -f %M).
#   7. Prints one line per case and a markdown table; raw hyperfine JSON,
#      logs and the table go to $BENCH_DIR/results.
#
# Environment:
#   BENCH_DIR=/var/tmp/postline-bench  where everything is written (avoid /tmp
#                               on this machine kind: file creation is slow there)
#   MAIL_DELIVER=path           use this binary instead of building one
#   BENCH_TARGET_DIR=/var/tmp/postline-bench-target  cargo target dir for the build
#   SPLIT_N=10000               messages in the --split mbox
#   ROUNDS=3                    rounds over the whole set of cases, in rotated order
#   RUNS=1                      hyperfine runs per case per round (ROUNDS=1 RUNS=3
#                               gives three back-to-back runs per case instead;
#                               on this noisy disk that lets drift bias one tool)
#   SPLIT_EACH=1                also time one process per message over the
#                               SPLIT_N messages (0: extrapolate from the N run)
#   SLOW_RUNS=1                 runs (per round) for the long SPLIT_N cases:
#                               one process per message, formail, fdm
#   SEED=1                      message generator seed
#   STATIC_VARIANT=1            also time a static-pie build of mail-deliver
#                               (RUSTFLAGS=-C target-feature=+crt-static; 0: skip);
#                               MAIL_DELIVER_STATIC=path gives a prebuilt one
#   MD_VARIANTS="name=PATH ..."  also time these builds of mail-deliver into a Maildir,
#                               in the same rounds (case ids md-mail-deliver-NAME)
#   DD_MB=512                   size of the dd bandwidth test
#   COOLDOWN=1                  on an ext4 without a journal, wait until 6 minutes have
#                               passed since the previous run emptied its trash (0: don't)
#   ONLY=regex                  run only the cases whose id matches (ids: floor,
#                               md-*, mbox-*, split-*, each-split-*, peer-split-*)
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
N=${1:-1000}
SPLIT_N=${SPLIT_N:-10000}
RUNS=${RUNS:-1}
ROUNDS=${ROUNDS:-3}
SLOW_RUNS=${SLOW_RUNS:-1}
SPLIT_EACH=${SPLIT_EACH:-1}
SEED=${SEED:-1}
STATIC_VARIANT=${STATIC_VARIANT:-1}
DD_MB=${DD_MB:-512}
ONLY=${ONLY:-}
COOLDOWN=${COOLDOWN:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp/postline-bench}
SENDER=sender@example.net
PROBE_SPLIT_N=$(( SPLIT_N < 1000 ? SPLIT_N : 1000 ))

die() { echo "deliver.sh: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
say() { echo "$*"; }

case "$N$SPLIT_N$RUNS$SLOW_RUNS$ROUNDS" in *[!0-9]*) die "N, SPLIT_N, RUNS, SLOW_RUNS and ROUNDS must be numbers" ;; esac
[ "$N" -gt 0 ] && [ "$SPLIT_N" -gt 0 ] && [ "$RUNS" -gt 0 ] && [ "$SLOW_RUNS" -gt 0 ] && [ "$ROUNDS" -gt 0 ] \
  || die "N, SPLIT_N, RUNS, SLOW_RUNS and ROUNDS must be positive"
case "$BENCH_DIR" in *[[:space:]\'\"\\\$\`]*) die "BENCH_DIR must not contain spaces, quotes or \$" ;; esac
for t in hyperfine gcc python3; do command -v "$t" >/dev/null || die "$t is required"; done

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
BIN=$BENCH_DIR/bin
CONF=$BENCH_DIR/conf
D=$BENCH_DIR/dest
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
START=$(date +%s)
RES=$BENCH_DIR/results/$STAMP
MSGS=$BENCH_DIR/msgs
TRASH=$BENCH_DIR/trash
if [ -d "$TRASH" ]; then rm -rf "$TRASH"; date +%s > "$BENCH_DIR/.cleaned"; fi   # left by an interrupted run
mkdir -p "$BIN" "$CONF" "$D" "$RES" "$MSGS" "$TRASH"
# discard PATH... -> sh snippet moving the paths into the trash (emptied at the end)
discard() { echo "for f in $*; do [ ! -e \$f ] || mv \$f \$(mktemp -d $TRASH/t.XXXXXX)/; done"; }
chmod 755 "$BENCH_DIR" "$BIN" "$CONF" "$D" "$MSGS"
ln -sfn "$STAMP" "$BENCH_DIR/results/latest"
REPORT=$RES/report.txt
ROWS=$RES/rows.tsv
: > "$ROWS"
exec > >(tee "$REPORT") 2>&1

case "$BENCH_DIR" in
  /tmp|/tmp/*) say "NOTE: BENCH_DIR is under /tmp, where creating a file is several times slower on this machine kind; numbers will be skewed." ;;
esac

# ---------------------------------------------------------------- binary ---
if [ -n "${MAIL_DELIVER:-}" ]; then
  MD=$MAIL_DELIVER
  [ -x "$MD" ] || die "MAIL_DELIVER=$MD is not executable"
else
  TARGET=${BENCH_TARGET_DIR:-/var/tmp/postline-bench-target}
  say "building mail-deliver (release) into $TARGET ..."
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --quiet --bin mail-deliver) \
    || die "cargo build failed"
  MD=$TARGET/release/mail-deliver
fi
MD=$(cd "$(dirname "$MD")" && pwd)/$(basename "$MD")
# The same code linked statically (no ld.so, no libgcc_s): isolates process start-up cost.
MDS=${MAIL_DELIVER_STATIC:-}
if [ -z "$MDS" ] && [ "$STATIC_VARIANT" = 1 ] && have cargo; then
  TARGET=${BENCH_TARGET_DIR:-/var/tmp/postline-bench-target}
  host=$(rustc -vV 2>/dev/null | awk '/^host:/ { print $2 }')
  say "building a static-pie variant ($host, +crt-static) into $TARGET ..."
  if (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --quiet --bin mail-deliver --target "$host"); then
    MDS=$TARGET/$host/release/mail-deliver
  else
    say "static variant: build failed, skipped"
  fi
fi
[ -z "$MDS" ] || [ -x "$MDS" ] || die "MAIL_DELIVER_STATIC=$MDS is not executable"

# ----------------------------------------------------------------- tools ---
for c in each fsyncbench; do
  if [ ! -x "$BIN/$c" ] || [ "$HERE/$c.c" -nt "$BIN/$c" ]; then
    gcc -O2 -Wall -o "$BIN/$c" "$HERE/$c.c" || die "cannot compile bench/$c.c"
  fi
done
EACH=$BIN/each
LDA=/usr/lib/dovecot/dovecot-lda
pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }

# -------------------------------------------------------------- messages ---
GEN_SHA=$(sha256sum "$HERE/genmsg.py" | cut -c1-16)
NEED_FILES=$(( N > PROBE_SPLIT_N ? N : PROBE_SPLIT_N ))
if [ "$SPLIT_EACH" = 1 ] && [ "$SPLIT_N" -gt "$NEED_FILES" ]; then NEED_FILES=$SPLIT_N; fi
have_files=0
if [ -f "$MSGS/.stamp" ]; then
  read -r s_seed s_sha s_count < "$MSGS/.stamp" || true
  if [ "${s_seed:-}" = "$SEED" ] && [ "${s_sha:-}" = "$GEN_SHA" ]; then have_files=${s_count:-0}; fi
fi
if [ "$have_files" -lt "$NEED_FILES" ]; then
  say "generating $NEED_FILES messages into $MSGS ..."
  sh -c "$(discard "$MSGS")"; mkdir -p "$MSGS" && chmod 755 "$MSGS"
  python3 "$HERE/genmsg.py" --seed "$SEED" --count "$NEED_FILES" --dir "$MSGS"
  echo "$SEED $GEN_SHA $NEED_FILES" > "$MSGS/.stamp"
fi
mkmbox_input() {  # mkmbox_input COUNT -> path of an mboxrd file with the first COUNT messages
  local f=$BENCH_DIR/input-s$SEED-$1-$GEN_SHA.mbox
  if [ ! -s "$f" ]; then
    rm -f "$BENCH_DIR"/input-s"$SEED"-"$1"-*.mbox
    python3 "$HERE/genmsg.py" --seed "$SEED" --count "$1" --mbox "$f"
  fi
  echo "$f"
}
SPLIT_MBOX=$(mkmbox_input "$SPLIT_N")
PROBE_MBOX=$(mkmbox_input "$PROBE_SPLIT_N")
LIST=$BENCH_DIR/list-$N
LIST_SPLIT=$BENCH_DIR/list-split-$SPLIT_N
find "$MSGS" -name '*.eml' | sort | sed -n "1,${N}p" > "$LIST"
find "$MSGS" -name '*.eml' | sort | sed -n "1,${SPLIT_N}p" > "$LIST_SPLIT"
[ "$(wc -l < "$LIST")" = "$N" ] || die "expected $N messages in $MSGS"
FIRST=$(sed -n 1p "$LIST")
MSG_BYTES=$(xargs cat < "$LIST" | wc -c)
SPLIT_BYTES=$(wc -c < "$SPLIT_MBOX")
# Read everything once so no timed run pays for cold input.
xargs cat < "$LIST_SPLIT" > /dev/null; cat "$SPLIT_MBOX" "$PROBE_MBOX" > /dev/null

# --------------------------------------------------------------- configs ---
FDM_USER=$(getent passwd debianfdm _fdm 2>/dev/null | head -n 1 | cut -d: -f1 || true)
printf 'VERBOSE=off\n:0\n%s/\n' "$D/md-procmail" > "$CONF/procmail-md.rc"
printf 'VERBOSE=off\n:0:\n%s\n' "$D/mbox-procmail.mbox" > "$CONF/procmail-mbox.rc"
printf 'VERBOSE=off\n:0\n%s/\n' "$D/peer-split-formail" > "$CONF/procmail-split.rc"
printf 'to "%s/"\n' "$D/md-maildrop" > "$CONF/maildrop-md.rc"
printf 'to "%s"\n' "$D/mbox-maildrop.mbox" > "$CONF/maildrop-mbox.rc"
fdm_conf() {  # fdm_conf FILE ACCOUNT-LINE ACTION-LINE
  printf 'set lock-file "%s"\nset default-user "root"\n%s\n%s\nmatch all action "a"\n' \
    "$CONF/fdm.lock" "$2" "$3" > "$1"
}
fdm_conf "$CONF/fdm-md.conf" 'account "in" disabled stdin' "action \"a\" maildir \"$D/md-fdm\""
fdm_conf "$CONF/fdm-mbox.conf" 'account "in" disabled stdin' "action \"a\" mbox \"$D/mbox-fdm.mbox\""
fdm_conf "$CONF/fdm-split.conf" "account \"in\" mbox \"$D/fdm-input.mbox\" keep" \
  "action \"a\" maildir \"$D/peer-split-fdm\""
chmod 600 "$CONF"/*.rc "$CONF"/*.conf
LDA_HOME=$BENCH_DIR/lda-home
mkdir -p "$LDA_HOME" && chown nobody:nogroup "$LDA_HOME" 2>/dev/null || true
lda_conf() {  # lda_conf FILE MAIL_LOCATION
  cat > "$1" <<EOF
base_dir = $LDA_HOME/run
log_path = $LDA_HOME/lda.log
ssl = no
protocols =
mail_location = $2
EOF
  chmod 644 "$1"
}
lda_conf "$CONF/lda-index.conf" "maildir:$D/md-lda-index"
lda_conf "$CONF/lda-memory.conf" "maildir:$D/md-lda-memory:INDEX=MEMORY"
AS_NOBODY="env HOME=$LDA_HOME setpriv --reuid=nobody --regid=nogroup --clear-groups"

# reset snippets (POSIX sh, run by hyperfine's --prepare): the old destination
# goes to the trash (see the top of this file), a fresh one is made.
reset_md() {  # reset_md DIR [OWNER]
  local s="$(discard "$1") && mkdir -m 700 $1 && mkdir -m 700 $1/tmp $1/new $1/cur"
  [ -n "${2:-}" ] && s="$s && chown -R $2 $1"
  echo "$s"
}
reset_mbox() { echo "$(discard "$1" "$1.lock") && : > $1 && chmod 600 $1 && touch -d 2000-01-01 $1"; }
count_md() { echo "find $1/new $1/cur -type f | wc -l"; }
count_mbox() { echo "grep -c '^From ' $1 || true"; }

# ------------------------------------------------------------ the cases ---
declare -A RATE MEDIAN
fmt_rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "-" }'; }
median_of() { python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["results"][0]["median"])' "$1"; }

# probe ARGV-STRING INPUT MSGS [USER] -> "fsync/msg sys/msg rssKB syncs-detail"
probe() {
  local -a argv
  eval "argv=($1)"
  local input=$2 msgs=$3 user=${4:-} out fs sys rss detail
  out=$RES/probe.strace
  if have strace; then
    local -a sopt=(-f -c -o "$out")
    [ -n "$user" ] && sopt+=(-u "$user" -E "HOME=$LDA_HOME")
    strace "${sopt[@]}" "${argv[@]}" < "$input" > /dev/null 2>&1 || true
    read -r fs sys detail < <(awk -v m="$msgs" '
      $NF ~ /^(fsync|fdatasync|syncfs|sync_file_range|msync|sync)$/ { f += $4; d = d sprintf("%s%s %d", (d ? " + " : ""), $NF, $4) }
      $NF == "total" { t = $4 }
      END { if (m > 1 && d) d = d " in " m " msgs"; printf "%.2f %.1f %s\n", f / m, t / m, (d ? d : "none") }' "$out")
    rm -f "$out"
  else
    fs="?"; sys="?"; detail="?"
  fi
  if [ -n "$PROBE_RESET" ]; then sh -c "$PROBE_RESET" > /dev/null 2>&1 || true; fi
  if [ -x /usr/bin/time ]; then
    local -a pre=()
    [ -n "$user" ] && pre=(env "HOME=$LDA_HOME" setpriv --reuid="$user" --regid=nogroup --clear-groups)
    /usr/bin/time -f '%M' -o "$RES/rss.tmp" "${pre[@]}" "${argv[@]}" < "$input" > /dev/null 2>&1 || true
    rss=$(tr -dc 0-9 < "$RES/rss.tmp")
    rm -f "$RES/rss.tmp"
  fi
  echo "$fs $sys ${rss:-?} $detail"
}

# add_case ID TOOL WORKLOAD COUNT RUNS RESET CMD CHECK PROBE-ARGV PROBE-INPUT PROBE-MSGS NOTE [PROBE-USER [PROBE-RESET]]
# Registers a case. RESET and CHECK are sh snippets (CHECK prints the number
# of messages stored, "-" for no check); CMD is timed by hyperfine. The probe
# is one delivery (PROBE-ARGV, "-" for none) on PROBE-INPUT holding
# PROBE-MSGS messages, after PROBE-RESET (default RESET), run as PROBE-USER.
declare -A C_TOOL C_WL C_COUNT C_RUNS C_RESET C_CMD C_CHECK C_PARGV C_PIN C_PMSGS C_NOTE C_PUSER C_PRESET C_FAILED
add_case() {
  local id=$1
  if [ -n "$ONLY" ] && ! [[ $id =~ $ONLY ]]; then return 0; fi
  C_TOOL[$id]=$2; C_WL[$id]=$3; C_COUNT[$id]=$4; C_RUNS[$id]=$5; C_RESET[$id]=$6; C_CMD[$id]=$7
  C_CHECK[$id]=$8; C_PARGV[$id]=$9; C_PIN[$id]=${10}; C_PMSGS[$id]=${11}; C_NOTE[$id]=${12}
  C_PUSER[$id]=${13:-}; C_PRESET[$id]=${14:-$6}; C_FAILED[$id]=""
  GROUP+=("$id")
}

# One hyperfine call: RUNS runs of one case. Every prepare first counts what
# the previous run left (so every run is checked), then resets.
time_case() {  # time_case ID ROUND
  local id=$1 r=$2 check=${C_CHECK[$1]} reset=${C_RESET[$1]}
  local json=$RES/$id.r$r.json counts=$RES/$id.counts armed=$RES/$id.armed
  [ -z "${C_FAILED[$id]}" ] || return 0
  rm -f "$armed"
  local prep="if [ -e $armed ]; then ( $check ) >> $counts 2>/dev/null; fi; touch $armed; $reset; sync"
  [ "$check" = "-" ] && prep="$reset; sync"
  if ! hyperfine --runs "${C_RUNS[$id]}" --prepare "$prep" --export-json "$json" --style none \
         --command-name "$id" "${C_CMD[$id]}" >> "$RES/$id.log" 2>&1; then
    C_FAILED[$id]="hyperfine failed in round $r, see $RES/$id.log"
  elif [ "$check" != "-" ]; then
    ( sh -c "$check" ) >> "$counts" 2>/dev/null || true
  fi
  rm -f "$armed"
  sh -c "$(discard "$D/*")" > /dev/null 2>&1 || true
}

# Run the registered GROUP: ROUNDS rounds in rotated order, then one line per case.
run_group() {
  local n=${#GROUP[@]} r i id
  [ "$n" -gt 0 ] || return 0
  for id in "${GROUP[@]}"; do rm -f "$RES/$id".r*.json "$RES/$id.counts" "$RES/$id.log"; done
  for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
      time_case "${GROUP[$(( (i + r - 1) % n ))]}" "$r"
    done
  done
  for id in "${GROUP[@]}"; do finish_case "$id"; done
  GROUP=()
}

finish_case() {
  local id=$1 tool=${C_TOOL[$1]} wl=${C_WL[$1]} count=${C_COUNT[$1]} note=${C_NOTE[$1]}
  local med rate chk fs sys rss detail total
  if [ -n "${C_FAILED[$id]}" ]; then
    printf '%-26s %-30s %9s %9s  %-8s %s\n' "$tool" "$wl" "FAILED" "-" "-" "${C_FAILED[$id]}"
    printf '%s\t%s\t%s\t%s\tFAILED\t-\t-\t-\t-\t-\t-\t%s\n' "$id" "$tool" "$wl" "$count" "${C_FAILED[$id]}" >> "$ROWS"
    return 0
  fi
  # All runs of all rounds into one JSON; the median over all of them.
  med=$(python3 - "$RES/$id.json" "$RES/$id".r*.json <<'PY'
import json, statistics, sys
out, parts = sys.argv[1], sys.argv[2:]
times, rounds = [], []
for p in sorted(parts, key=lambda x: int(x.rsplit(".r", 1)[1].split(".")[0])):
    res = json.load(open(p))["results"][0]
    times += res["times"]
    rounds.append(res)
merged = dict(rounds[0])
merged.update(times=times, mean=statistics.mean(times), median=statistics.median(times),
              min=min(times), max=max(times), stddev=statistics.pstdev(times))
json.dump({"results": [merged], "rounds": rounds}, open(out, "w"), indent=1)
print("%.4f" % merged["median"])
PY
)
  rate=$(fmt_rate "$count" "$med")
  total=$(( ROUNDS * C_RUNS[$id] ))
  if [ "${C_CHECK[$id]}" = "-" ]; then
    chk="n/a"
  elif [ "$(grep -cx "$count" "$RES/$id.counts")" = "$total" ] && [ "$(wc -l < "$RES/$id.counts")" = "$total" ]; then
    chk="ok"
  else
    chk="GOT:$(paste -sd/ "$RES/$id.counts")"
  fi
  if [ "${C_PARGV[$id]}" != "-" ]; then
    PROBE_RESET=${C_PRESET[$id]}
    sh -c "$PROBE_RESET" > /dev/null 2>&1 || true
    read -r fs sys rss detail < <(probe "${C_PARGV[$id]}" "${C_PIN[$id]}" "${C_PMSGS[$id]}" "${C_PUSER[$id]}")
    sh -c "$(discard "$D/*")" > /dev/null 2>&1 || true
  else
    fs="-"; sys="-"; rss="-"; detail="-"
  fi
  RATE[$id]=$rate
  MEDIAN[$id]=$med
  printf '%-26s %-30s %9s %9s  %-8s fsync/msg=%s (%s) syscalls/msg=%s rss=%sKB %s\n' \
    "$tool" "$wl" "$rate" "$med" "$chk" "$fs" "$detail" "$sys" "$rss" "$note"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$tool" "$wl" "$count" "$rate" "$med" "$chk" \
    "$fs" "$sys" "$rss" "$detail" "$note" >> "$ROWS"
}
GROUP=()

# ------------------------------------------------------------ the header ---
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
fsinfo=$(findmnt -n -o SOURCE,FSTYPE,OPTIONS -T "$BENCH_DIR" 2>/dev/null || df -T "$BENCH_DIR" | tail -n 1)
say "# bench/deliver.sh: N=$N, SPLIT_N=$SPLIT_N, RUNS=$RUNS, ROUNDS=$ROUNDS, SLOW_RUNS=$SLOW_RUNS, SEED=$SEED, $(date -u '+%F %T UTC')"
say "# machine: $(nproc) cores, $cpu, $mem RAM, kernel $(uname -r), BENCH_DIR=$BENCH_DIR on $fsinfo"
dev=$(findmnt -n -o SOURCE -T "$BENCH_DIR" 2>/dev/null | xargs -r basename 2>/dev/null || true)
if [ -n "$dev" ] && [ "$(cat "/sys/fs/ext4/$dev/journal_task" 2>/dev/null)" = "<none>" ]; then
  say "# NOTE: $dev is ext4 WITHOUT a journal: fsync writes the inode and data directly, and file creation"
  say "#       slows down for minutes after mass deletions (recently deleted inodes are skipped one by one)."
  last=$(cat "$BENCH_DIR/.cleaned" 2>/dev/null || echo 0)
  wait_s=$(( last + 360 - $(date +%s) ))
  if [ "$wait_s" -gt 0 ]; then
    if [ "$COOLDOWN" = 1 ]; then
      say "#       The previous run deleted its files $(( 360 - wait_s )) s ago: waiting $wait_s s (COOLDOWN=0 skips this)."
      sleep "$wait_s"
    else
      say "#       WARNING: the previous run deleted its files $(( 360 - wait_s )) s ago; file-creating cases may be slow."
    fi
  fi
fi
say "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
say "# messages: $N files, $MSG_BYTES bytes (avg $((MSG_BYTES / N)) B); split mbox: $SPLIT_N messages, $SPLIT_BYTES bytes"
say "# mail-deliver: $MD ($("$MD" --version 2>/dev/null | head -n 1))${MDS:+; static-pie variant: $MDS}"
say "# git: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo "?")"
say "# versions: procmail $(pkgver procmail), maildrop $(pkgver maildrop), safecat $(pkgver safecat), fdm $(pkgver fdm), dovecot $(pkgver dovecot-core), hyperfine $(hyperfine --version | cut -d' ' -f2)"

# -------------------------------------------------------------- limits ---
limits() {  # limits LABEL
  say "# 4 KB files, $N each, in $BENCH_DIR/fsyncbench ($1):"
  "$BIN/fsyncbench" "$BENCH_DIR/fsyncbench" "$N" 4096 | tee "$RES/fsyncbench-$1.txt" | sed 's/^/#   /'
  sh -c "$(discard "$BENCH_DIR/fsyncbench")"
}
limits before
dd_mbs() {
  local i t0 t1
  for i in 1 2 3; do
    sync
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$BENCH_DIR/dd.tmp" bs=1M count="$DD_MB" conv=fdatasync status=none
    t1=$(date +%s.%N)
    rm -f "$BENCH_DIR/dd.tmp"
    awk -v a="$t0" -v b="$t1" -v m="$DD_MB" 'BEGIN { printf "%.0f\n", m * 1048576 / (b - a) / 1e6 }'
  done | sort -n | sed -n 2p
}
DISK_MBS=$(dd_mbs)
say "# sequential write (dd $DD_MB MiB of zeros, conv=fdatasync, median of 3): $DISK_MBS MB/s"
say "#"
printf '%-26s %-30s %9s %9s  %-8s %s\n' "tool" "workload" "msg/s" "median s" "check" "notes"

add_case floor "spawn floor (each → true)" "spawn only" "$N" "$RUNS" ":" "$EACH $LIST /bin/true" "-" \
  "-" "" 1 "one posix_spawn + wait per message"

# ------------------------------------------------ Maildir, one process per message
add_case md-mail-deliver "mail-deliver" "Maildir" "$N" "$RUNS" "$(reset_md "$D/md-mail-deliver")" \
  "$EACH $LIST $MD $D/md-mail-deliver/" "$(count_md "$D/md-mail-deliver")" \
  "$MD $D/md-mail-deliver/" "$FIRST" 1 "file fdatasync + fsync(new/)"
if [ -n "$MDS" ]; then
  add_case md-mail-deliver-static "mail-deliver (static-pie)" "Maildir" "$N" "$RUNS" "$(reset_md "$D/md-mail-deliver-static")" \
    "$EACH $LIST $MDS $D/md-mail-deliver-static/" "$(count_md "$D/md-mail-deliver-static")" \
    "$MDS $D/md-mail-deliver-static/" "$FIRST" 1 "same code, +crt-static: no ld.so/libgcc_s start-up"
fi
# Other builds of mail-deliver (MD_VARIANTS="name=path ..."), in the same rounds.
for v in ${MD_VARIANTS:-}; do
  vn=${v%%=*} vp=${v#*=}
  [ -x "$vp" ] || die "MD_VARIANTS: $vp is not executable"
  add_case "md-mail-deliver-$vn" "mail-deliver ($vn)" "Maildir" "$N" "$RUNS" "$(reset_md "$D/md-mail-deliver-$vn")" \
    "$EACH $LIST $vp $D/md-mail-deliver-$vn/" "$(count_md "$D/md-mail-deliver-$vn")" \
    "$vp $D/md-mail-deliver-$vn/" "$FIRST" 1 "build variant $vn: $vp"
done
if have procmail; then
  add_case md-procmail "procmail" "Maildir" "$N" "$RUNS" "$(reset_md "$D/md-procmail")" \
    "$EACH $LIST procmail -m $CONF/procmail-md.rc" "$(count_md "$D/md-procmail")" \
    "procmail -m $CONF/procmail-md.rc" "$FIRST" 1 "tmp + link, no dir fsync"
fi
if have maildrop; then
  add_case md-maildrop "maildrop" "Maildir" "$N" "$RUNS" "$(reset_md "$D/md-maildrop")" \
    "$EACH $LIST maildrop $CONF/maildrop-md.rc" "$(count_md "$D/md-maildrop")" \
    "maildrop $CONF/maildrop-md.rc" "$FIRST" 1 ""
fi
if have safecat; then
  add_case md-safecat "safecat" "Maildir" "$N" "$RUNS" "$(reset_md "$D/md-safecat")" \
    "$EACH $LIST safecat $D/md-safecat/tmp $D/md-safecat/new" "$(count_md "$D/md-safecat")" \
    "safecat $D/md-safecat/tmp $D/md-safecat/new" "$FIRST" 1 "tmp + link, no dir fsync"
fi
if have fdm; then
  add_case md-fdm "fdm (stdin account)" "Maildir" "$N" "$RUNS" "$(reset_md "$D/md-fdm")" \
    "$EACH $LIST fdm -q -f $CONF/fdm-md.conf -a in fetch" "$(count_md "$D/md-fdm")" \
    "fdm -q -f $CONF/fdm-md.conf -a in fetch" "$FIRST" 1 "forks a delivery child"
fi
if [ -x "$LDA" ] && have setpriv; then
  add_case md-lda-index "dovecot-lda" "Maildir + index files" "$N" "$RUNS" \
    "$(reset_md "$D/md-lda-index" nobody:nogroup)" \
    "$AS_NOBODY $EACH $LIST $LDA -c $CONF/lda-index.conf" "$(count_md "$D/md-lda-index")" \
    "$LDA -c $CONF/lda-index.conf" "$FIRST" 1 "as nobody, no -d (no auth); updates Dovecot indexes" nobody
  add_case md-lda-memory "dovecot-lda" "Maildir, INDEX=MEMORY" "$N" "$RUNS" \
    "$(reset_md "$D/md-lda-memory" nobody:nogroup)" \
    "$AS_NOBODY $EACH $LIST $LDA -c $CONF/lda-memory.conf" "$(count_md "$D/md-lda-memory")" \
    "$LDA -c $CONF/lda-memory.conf" "$FIRST" 1 "as nobody; indexes in memory (dovecot-uidlist still written)" nobody
else
  say "dovecot-lda: skipped (no $LDA or no setpriv)"
fi

# (the mbox cases join the same group: all one-process-per-message cases are timed together)
# ---------------------------------------------- mbox, one process per message
add_case mbox-mail-deliver "mail-deliver" "mbox (dotlock+fcntl)" "$N" "$RUNS" "$(reset_mbox "$D/mbox-mail-deliver.mbox")" \
  "$EACH $LIST $MD -f $SENDER $D/mbox-mail-deliver.mbox" "$(count_mbox "$D/mbox-mail-deliver.mbox")" \
  "$MD -f $SENDER $D/mbox-mail-deliver.mbox" "$FIRST" 1 "-f sender (adds Return-Path)"
if [ -n "$MDS" ]; then
  add_case mbox-mail-deliver-static "mail-deliver (static-pie)" "mbox (dotlock+fcntl)" "$N" "$RUNS" \
    "$(reset_mbox "$D/mbox-mail-deliver-static.mbox")" \
    "$EACH $LIST $MDS -f $SENDER $D/mbox-mail-deliver-static.mbox" "$(count_mbox "$D/mbox-mail-deliver-static.mbox")" \
    "$MDS -f $SENDER $D/mbox-mail-deliver-static.mbox" "$FIRST" 1 "same code, +crt-static"
fi
if have procmail; then
  add_case mbox-procmail "procmail" "mbox (:0: dotlock+fcntl)" "$N" "$RUNS" "$(reset_mbox "$D/mbox-procmail.mbox")" \
    "$EACH $LIST procmail -f $SENDER -m $CONF/procmail-mbox.rc" "$(count_mbox "$D/mbox-procmail.mbox")" \
    "procmail -f $SENDER -m $CONF/procmail-mbox.rc" "$FIRST" 1 "-f sender"
fi
if have maildrop; then
  add_case mbox-maildrop "maildrop" "mbox (dotlock+fcntl)" "$N" "$RUNS" "$(reset_mbox "$D/mbox-maildrop.mbox")" \
    "$EACH $LIST maildrop -f $SENDER $CONF/maildrop-mbox.rc" "$(count_mbox "$D/mbox-maildrop.mbox")" \
    "maildrop -f $SENDER $CONF/maildrop-mbox.rc" "$FIRST" 1 "-f sender"
fi
if have fdm; then
  add_case mbox-fdm "fdm (stdin account)" "mbox (flock, fdm default)" "$N" "$RUNS" "$(reset_mbox "$D/mbox-fdm.mbox")" \
    "$EACH $LIST fdm -q -f $CONF/fdm-mbox.conf -a in fetch" "$(count_mbox "$D/mbox-fdm.mbox")" \
    "fdm -q -f $CONF/fdm-mbox.conf -a in fetch" "$FIRST" 1 ""
fi

run_group

# ------------------------------------------------------------- --split ---
add_case split-md "mail-deliver --split" "mbox stream → Maildir" "$SPLIT_N" "$RUNS" "$(reset_md "$D/split-md")" \
  "$MD --split $D/split-md/ < $SPLIT_MBOX" "$(count_md "$D/split-md")" \
  "$MD --split $D/split-md/" "$PROBE_MBOX" "$PROBE_SPLIT_N" "one process; syncfs + fsync(new/) per batch"
add_case split-mbox "mail-deliver --split" "mbox stream → mbox" "$SPLIT_N" "$RUNS" "$(reset_mbox "$D/split.mbox")" \
  "$MD --split $D/split.mbox < $SPLIT_MBOX" "$(count_mbox "$D/split.mbox")" \
  "$MD --split $D/split.mbox" "$PROBE_MBOX" "$PROBE_SPLIT_N" "one process; one locked append + fdatasync per batch"
run_group
if [ "$SPLIT_EACH" = 1 ]; then
  add_case each-split-md "mail-deliver, 1 proc/msg" "same $SPLIT_N msgs → Maildir" "$SPLIT_N" "$SLOW_RUNS" \
    "$(reset_md "$D/each-split-md")" "$EACH $LIST_SPLIT $MD $D/each-split-md/" "$(count_md "$D/each-split-md")" \
    "-" "" 1 "what --split replaces"
  add_case each-split-mbox "mail-deliver, 1 proc/msg" "same $SPLIT_N msgs → mbox" "$SPLIT_N" "$SLOW_RUNS" \
    "$(reset_mbox "$D/each-split.mbox")" "$EACH $LIST_SPLIT $MD -f $SENDER $D/each-split.mbox" \
    "$(count_mbox "$D/each-split.mbox")" "-" "" 1 "what --split replaces"
fi
if have formail && have procmail; then
  add_case peer-split-formail "formail -s procmail" "mbox stream → Maildir" "$SPLIT_N" "$SLOW_RUNS" \
    "$(reset_md "$D/peer-split-formail")" "formail -s procmail -m $CONF/procmail-split.rc < $SPLIT_MBOX" \
    "$(count_md "$D/peer-split-formail")" "formail -s procmail -m $CONF/procmail-split.rc" "$PROBE_MBOX" \
    "$PROBE_SPLIT_N" "one procmail per message; rss is formail's"
fi
if have fdm && [ -n "$FDM_USER" ]; then
  # fdm opens the mbox read-write as its unprivileged user: give it a copy it owns.
  # The probe runs on a copy of the small mbox (fdm reads the file named in its config).
  add_case peer-split-fdm "fdm (mbox account, keep)" "mbox file → Maildir" "$SPLIT_N" "$SLOW_RUNS" \
    "$(reset_md "$D/peer-split-fdm") && cp $SPLIT_MBOX $D/fdm-input.mbox && chown $FDM_USER $D/fdm-input.mbox" \
    "fdm -q -f $CONF/fdm-split.conf -a in fetch" "$(count_md "$D/peer-split-fdm")" \
    "fdm -q -f $CONF/fdm-split.conf -a in fetch" /dev/null "$PROBE_SPLIT_N" \
    "one process reading the mbox; forks delivery children" "" \
    "$(reset_md "$D/peer-split-fdm") && cp $PROBE_MBOX $D/fdm-input.mbox && chown $FDM_USER $D/fdm-input.mbox"
fi
run_group
# mail-deliver's peak memory on the whole SPLIT_N mbox (batches are capped at 512 messages / 32 MB)
SPLIT_RSS="?"
if [ -x /usr/bin/time ] && { [ -z "$ONLY" ] || [[ split-md =~ $ONLY ]]; }; then
  sh -c "$(reset_md "$D/split-md")"
  /usr/bin/time -f '%M' -o "$RES/rss.tmp" "$MD" --split "$D/split-md/" < "$SPLIT_MBOX" > /dev/null 2>&1 || true
  SPLIT_RSS=$(tr -dc 0-9 < "$RES/rss.tmp"); rm -f "$RES/rss.tmp"
  sh -c "$(discard "$D/split-md")"
  say "#   mail-deliver --split peak RSS on all $SPLIT_N messages: ${SPLIT_RSS}KB"
fi

# Integrity: --split of the probe mbox must give back the generated files byte for byte.
if [ -z "$ONLY" ]; then
  sh -c "$(discard "$D/integrity")"
  "$MD" --split "$D/integrity/" < "$PROBE_MBOX" > /dev/null
  a=$(cd "$D/integrity/new" && find . -type f -exec md5sum {} + | awk '{ print $1 }' | sort | md5sum)
  b=$(sed -n "1,${PROBE_SPLIT_N}p" "$LIST_SPLIT" | xargs md5sum | awk '{ print $1 }' | sort | md5sum)
  if [ "$a" = "$b" ]; then
    say "#   integrity: mail-deliver --split of $PROBE_SPLIT_N messages gave back every generated file byte for byte"
  else
    say "#   integrity: MISMATCH between mail-deliver --split output and the generated files"
  fi
  sh -c "$(discard "$D/integrity")"
fi

limits after
say "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------- summary ---
say "#"
say "# --split against one process per message and against the disk:"
summary() {  # summary SPLIT-ID EACH-ID N-ID LABEL
  local s=${RATE[$1]:-} e=${RATE[$2]:-} n=${RATE[$3]:-} how ref
  [ -n "$s" ] || return 0
  if [ -n "$e" ]; then ref=$e; how="measured over the same $SPLIT_N messages"
  elif [ -n "$n" ]; then ref=$n; how="extrapolated from the N=$N one-process-per-message rate"
  else ref=""; fi
  local mbs
  mbs=$(awk -v b="$SPLIT_BYTES" -v t="${MEDIAN[$1]}" 'BEGIN { printf "%.1f", b / t / 1e6 }')
  if [ -n "$ref" ]; then
    say "#   $4: --split $s msg/s vs $ref msg/s one process per message ($how): $(awk -v a="$s" -v b="$ref" 'BEGIN { printf "%.1f", a / b }')x"
  fi
  say "#   $4: --split moves $mbs MB/s of mail = $(awk -v a="$mbs" -v b="$DISK_MBS" 'BEGIN { printf "%.1f", 100 * a / b }')% of the disk's $DISK_MBS MB/s sequential write"
}
summary split-md each-split-md md-mail-deliver "Maildir"
summary split-mbox each-split-mbox mbox-mail-deliver "mbox"

# markdown table
TABLE=$RES/table.md
{
  echo "| tool | workload | messages | msg/s | median s | check | fsync-family calls/msg (strace) | syscalls/msg | peak RSS | notes |"
  echo "|---|---|--:|--:|--:|---|---|--:|--:|---|"
  while IFS=$'\t' read -r id tool wl count rate med chk fs sys rss detail note; do
    [ "$rss" = "-" ] || [ "$rss" = "?" ] || rss="$(awk -v k="$rss" 'BEGIN { printf "%.1f MB", k / 1024 }')"
    [ "$detail" = "-" ] || [ "$detail" = "?" ] || fs="$fs ($detail)"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$tool" "$wl" "$count" "$rate" "$med" "$chk" "$fs" "$sys" "$rss" "$note"
  done < "$ROWS"
} > "$TABLE"
say "#"
say "# markdown (also in $TABLE):"
cat "$TABLE"
say "# raw hyperfine JSON and logs: $RES/<case>.json (all runs), <case>.rN.json (round N); this report: $REPORT"
t0=$(date +%s)
rm -rf "$TRASH"
date +%s > "$BENCH_DIR/.cleaned"
say "# emptied $TRASH in $(( $(date +%s) - t0 )) s; total time $(( $(date +%s) - START )) s"
