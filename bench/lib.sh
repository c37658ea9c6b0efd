# bench/lib.sh - what bench/send.sh and bench/fetch.sh share (sourced, not run):
# messages, the `each` driver, our binaries, per-run checks around hyperfine,
# and the result table. Servers are in bench/servers.sh.

die() { echo "$(basename "$0"): $*" >&2; exit 1; }
say() { echo "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }

# bench_init NAME - $W (work dir $BENCH_DIR/NAME), $RES (results/NAME-stamp), the
# trash, the console copy in $RES/report.txt.
bench_init() {
  BENCH_DIR=${BENCH_DIR:-/var/tmp/postline-bench}
  case "$BENCH_DIR" in *[!A-Za-z0-9_./-]*) die "BENCH_DIR may hold only A-Z a-z 0-9 _ . / -" ;; esac
  case "$BENCH_DIR" in
    /tmp|/tmp/*) say "NOTE: BENCH_DIR is under /tmp, where creating a file is several times slower on this machine kind." ;;
  esac
  mkdir -p "$BENCH_DIR"
  BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
  chmod 755 "$BENCH_DIR"
  W=$BENCH_DIR/$1
  STAMP=$(date -u +%Y%m%dT%H%M%SZ)
  RES=$BENCH_DIR/results/$1-$STAMP
  TRASH=$W/trash
  mkdir -p "$W/bin" "$W/state" "$RES" "$TRASH"
  chmod 755 "$W"
  # the same for reset snippets run by hyperfine: $W/bin/discard PATH...
  printf '#!/bin/sh\nfor f in "$@"; do [ ! -e "$f" ] || mv "$f" "$(mktemp -d %s/t.XXXXXX)/"; done\n' "$TRASH" > "$W/bin/discard"
  chmod 755 "$W/bin/discard"
  ln -sfn "$1-$STAMP" "$BENCH_DIR/results/$1-latest"
  START=$(date +%s)
  exec > >(tee "$RES/report.txt") 2>&1
}

# discard PATH... - move into the trash (emptied at the end): on an ext4 without
# a journal, creating files right after deleting thousands is several times
# slower, which would penalise whichever case ran after a big delete.
discard() { local f; for f in "$@"; do [ ! -e "$f" ] || mv "$f" "$(mktemp -d "$TRASH/t.XXXXXX")/"; done; }

# bench_each - compile bench/each.c (one posix_spawn per message file) into $EACH
bench_each() {
  have gcc || die "gcc is required (to build bench/each.c)"
  EACH=$W/bin/each
  if [ ! -x "$EACH" ] || [ "$HERE/each.c" -nt "$EACH" ]; then
    gcc -O2 -Wall -o "$EACH" "$HERE/each.c" || die "cannot compile bench/each.c"
  fi
}

# bench_msgs COUNT SEED - COUNT files from bench/genmsg.py in $MSGS, listed in $LIST
bench_msgs() {
  local count=$1 seed=$2 sha s_seed s_sha s_count
  MSGS=$W/msgs
  sha=$(sha256sum "$HERE/genmsg.py" | cut -c1-16)
  read -r s_seed s_sha s_count 2>/dev/null < "$MSGS/.stamp" || true
  if [ "${s_seed:-}" != "$seed" ] || [ "${s_sha:-}" != "$sha" ] || [ "${s_count:-0}" -lt "$count" ]; then
    say "generating $count messages into $MSGS ..."
    discard "$MSGS"
    mkdir -p "$MSGS"
    python3 "$HERE/genmsg.py" --seed "$seed" --count "$count" --dir "$MSGS"
    echo "$seed $sha $count" > "$MSGS/.stamp"
  fi
  LIST=$W/list-$count
  find "$MSGS" -name '*.eml' | sort | sed -n "1,${count}p" > "$LIST"
  [ "$(wc -l < "$LIST")" = "$count" ] || die "expected $count messages in $MSGS"
  MSG_BYTES=$(xargs cat < "$LIST" | wc -c)
}

# bench_bin TOOL - path of our TOOL: from $POSTLINE_BIN (a directory), or built
# (release) into $BENCH_TARGET_DIR when POSTLINE_BIN is unset; empty when
# POSTLINE_BIN=none or the binary is missing (the cases are then skipped).
bench_bin() {
  local tool=$1 dir
  if [ "${POSTLINE_BIN:-}" = none ]; then return 0; fi
  if [ -n "${POSTLINE_BIN:-}" ]; then
    dir=$POSTLINE_BIN
  else
    dir=${BENCH_TARGET_DIR:-/var/tmp/postline-bench-target}/release
    if [ -z "${BENCH_BUILT:-}" ]; then
      say "building postline (release) into ${dir%/release} ..." >&2
      (cd "$ROOT" && CARGO_TARGET_DIR=${dir%/release} cargo build --release --quiet --bins) >&2 \
        || die "cargo build failed"
      BENCH_BUILT=1
    fi
  fi
  if [ -x "$dir/$tool" ]; then
    (cd "$dir" && echo "$(pwd)/$tool")
  else
    say "NOTE: no $dir/$tool: its cases are skipped" >&2
  fi
}

# ------------------------------------------------------------- cases ----
# A case is one command timed by hyperfine, with a reset before every run and
# a check after it. Registered with add_case; run_hyperfine times a set of
# cases in one hyperfine invocation. The check of run k happens in the
# --prepare of run k+1 (or in the final --cleanup), so every run is checked,
# warm-up runs included, and none of it is timed.
#
# add_case ID LABEL WORKLOAD EXPECT CMD RESET CHECK NOTE
#   EXPECT  what CHECK must print after every run (e.g. the message count);
#           "-" for no check
#   RESET   sh snippet run (untimed) before every run; ":" for none
#   CHECK   sh snippet printing the result of the run just done
declare -A C_LABEL C_WL C_EXPECT C_CMD C_RESET C_CHECK C_NOTE
CASES=()
add_case() {
  local id=$1
  if [ -n "${ONLY:-}" ] && ! [[ $id =~ $ONLY ]]; then return 0; fi
  C_LABEL[$id]=$2; C_WL[$id]=$3; C_EXPECT[$id]=$4; C_CMD[$id]=$5
  C_RESET[$id]=$6; C_CHECK[$id]=$7; C_NOTE[$id]=$8
  printf '%s\n' "$6" > "$W/state/reset-$id.sh"
  printf '%s\n' "$7" > "$W/state/check-$id.sh"
  CASES+=("$id")
}

# The prepare/cleanup script hyperfine calls: check the run just done (if any),
# then (prepare) reset for the next one.
write_hook() {
  cat > "$W/state/hook.sh" <<EOF
#!/usr/bin/env bash
# hook.sh prepare ID | cleanup   (generated by bench/lib.sh)
set -u
S=$W/state
cur=\$(cat "\$S/current" 2>/dev/null || true)
if [ -n "\$cur" ]; then
  got=\$(bash "\$S/check-\$cur.sh" 2>>"\$S/check-\$cur.err" | tail -n 1)
  echo "\${got:-?}" >> "\$S/counts-\$cur"
  : > "\$S/current"
fi
if [ "\$1" = prepare ]; then
  bash "\$S/reset-\$2.sh" > "\$S/reset-\$2.log" 2>&1 || { echo "reset of \$2 failed: see \$S/reset-\$2.log" >&2; exit 1; }
  echo "\$2" > "\$S/current"
  sync
fi
EOF
  chmod 755 "$W/state/hook.sh"
}

# preflight ID CMD [RESET] - run a one-message version of a case (CMD, after
# RESET, default the case's own reset; then the case's check, which must print
# PREFLIGHT_EXPECT[ID]) before timing; a failing case is dropped with its
# error shown, so a broken tool costs seconds, not a whole hyperfine run.
PREFLIGHT_FAILED=()
preflight() {
  local id=$1 cmd=$2 got
  printf '%s\n' "${3:-$(cat "$W/state/reset-$id.sh")}" > "$W/state/preflight-reset-$id.sh"
  if ! bash "$W/state/preflight-reset-$id.sh" > "$W/state/preflight-$id.log" 2>&1 \
     || ! bash -c "$cmd" >> "$W/state/preflight-$id.log" 2>&1; then
    say "SKIP $id: its one-message trial failed:"; tail -n 5 "$W/state/preflight-$id.log" | sed 's/^/    /'
    PREFLIGHT_FAILED+=("$id"); return 1
  fi
  got=$(bash "$W/state/check-$id.sh" 2>>"$W/state/preflight-$id.log" | tail -n 1)
  if [ "${PREFLIGHT_EXPECT[$id]:-}" != "" ] && [ "$got" != "${PREFLIGHT_EXPECT[$id]}" ]; then
    say "SKIP $id: its one-message trial stored '$got', expected '${PREFLIGHT_EXPECT[$id]}' (log: $W/state/preflight-$id.log)"
    PREFLIGHT_FAILED+=("$id"); return 1
  fi
  return 0
}
declare -A PREFLIGHT_EXPECT

# run_hyperfine GROUP ID... - one hyperfine invocation timing the cases, RUNS runs each
run_hyperfine() {
  local group=$1 id; shift
  local -a args=()
  [ $# -gt 0 ] || { say "($group: no cases to run)"; return 0; }
  write_hook
  : > "$W/state/current"
  for id in "$@"; do
    rm -f "$W/state/counts-$id" "$W/state/check-$id.err"
    args+=(--command-name "$id" --prepare "$W/state/hook.sh prepare $id" "${C_CMD[$id]}")
  done
  say "hyperfine ($group): $* - ${RUNS} run(s) each ..."
  hyperfine --runs "$RUNS" --ignore-failure --style basic --export-json "$RES/$group.json" \
    --cleanup "$W/state/hook.sh cleanup" "${args[@]}" > "$RES/$group.log" 2>&1 \
    || { tail -n 20 "$RES/$group.log"; die "hyperfine failed (log: $RES/$group.log)"; }
  "$W/state/hook.sh" cleanup
  for id in "$@"; do cp "$W/state/counts-$id" "$RES/$id.counts" 2>/dev/null || : > "$RES/$id.counts"; done
}

# table GROUP COUNT - one row per case of GROUP (median, msg/s, spread, checks)
table() {
  local group=$1 count=$2 id
  [ -s "$RES/$group.json" ] || return 0
  for id in "${CASES[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$id" "${C_LABEL[$id]}" "${C_WL[$id]}" "${C_EXPECT[$id]}" "${C_NOTE[$id]}"
  done > "$RES/cases.tsv"
  python3 - "$RES/$group.json" "$RES/cases.tsv" "$RES" "$count" <<'PY' | tee -a "$RES/table.md"
import json, sys, os
js, cases, res, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
meta = {}
for line in open(cases):
    f = line.rstrip("\n").split("\t")
    meta[f[0]] = f[1:]
print("| tool | workload | msg/s | median s | min-max s | runs | check | notes |")
print("|---|---|--:|--:|--:|--:|---|---|")
for r in json.load(open(js))["results"]:
    cid = r["command"]
    label, wl, expect, note = meta.get(cid, [cid, "", "-", ""])
    counts_file = os.path.join(res, cid + ".counts")
    counts = [l.strip() for l in open(counts_file)] if os.path.exists(counts_file) else []
    codes = r.get("exit_codes") or []
    bad = [c for c in codes if c not in (0, None)]
    if expect == "-":
        check = "n/a"
    elif counts and all(c == expect for c in counts) and len(counts) >= len(r["times"]):
        check = "ok"
    else:
        check = "**FAILED** got " + "/".join(counts or ["nothing"]) + " want " + expect
    if bad:
        check += " **exit %s**" % ",".join(str(c) for c in sorted(set(bad)))
    med = r["median"]
    rate = "%.0f" % (n / med) if med > 0 else "-"
    print("| %s | %s | %s | %.3f | %.3f-%.3f | %d | %s | %s |" % (
        label, wl, rate, med, r["min"], r["max"], len(r["times"]), check, note))
PY
  for id in "${CASES[@]}"; do
    [[ " ${PREFLIGHT_FAILED[*]:-} " == *" $id "* ]] || continue
    echo "| ${C_LABEL[$id]} | ${C_WL[$id]} | - | - | - | 0 | **SKIPPED**: its one-message trial failed ($W/state/preflight-$id.log) | ${C_NOTE[$id]} |" \
      | tee -a "$RES/table.md"
  done
}

bench_header() {  # bench_header SCRIPT-DESCRIPTION
  local cpu mem fsinfo
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  fsinfo=$(findmnt -n -o SOURCE,FSTYPE,OPTIONS -T "$BENCH_DIR" 2>/dev/null || df -T "$BENCH_DIR" | tail -n 1)
  say "# $1, $(date -u '+%F %T UTC')"
  say "# machine: $(nproc) cores, $cpu, $mem RAM, kernel $(uname -r), $BENCH_DIR on $fsinfo"
  say "# load before: $(cut -d' ' -f1-3 /proc/loadavg); git: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo "?")"
  # deliver.sh's cooldown file: on an ext4 without a journal, file creation is
  # slow for minutes after a mass delete (see BENCHMARKS.md, "Deliver").
  local last ago
  last=$(cat "$BENCH_DIR/.cleaned" 2>/dev/null || echo 0)
  ago=$(( $(date +%s) - last ))
  if [ "$ago" -lt 360 ]; then
    say "# WARNING: a benchmark deleted its files $ago s ago; on an ext4 without a journal file"
    say "#          creation is slower for about 6 minutes after that. Numbers may be low."
  fi
}

bench_end() {
  say "# load after: $(cut -d' ' -f1-3 /proc/loadavg); took $(( $(date +%s) - START )) s; raw: $RES"
  if [ -n "$(ls -A "$TRASH" 2>/dev/null)" ]; then rm -rf "$TRASH"; date +%s > "$BENCH_DIR/.cleaned"; fi
  if grep -q 'FAILED\|SKIPPED' "$RES/table.md" 2>/dev/null; then
    say "# SOME CASES FAILED THEIR CHECK OR WERE SKIPPED (see the tables above)"
    exit 1
  fi
}
