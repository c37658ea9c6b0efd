#!/usr/bin/env bash
# bench/sieve.sh [N] - N messages (default 10,000) through a 50-rule filter into
# Maildir folders: mail-deliver --sieve one process per message and --split,
# procmail with the same rules as recipes (one process per message), and
# Pigeonhole's sieve-filter (one process over a Maildir holding the messages)
# and sieve-test -e (one process per message), in one hyperfine run.
#
#   bench/sieve.sh             # 10,000 messages, about 5 minutes
#   bench/sieve.sh 2000        # quicker
#
# What it does (under $BENCH_DIR, default /var/tmp/postline-bench-sieve):
#   1. Generates N messages with bench/genmsg.py (the deliver bench's
#      messages) as files and as one mboxrd file.
#   2. Writes the 50 rules three ways: a Sieve script (rules.sieve) and a
#      procmailrc (rules.rc). Rules 1-30 test the From address against
#      addresses no message has, 31-40 the Subject for the generator's topic
#      words, 41-50 the From domain; the first rule that matches files the
#      message into its folder and stops, the rest stays in INBOX (half the
#      subject and domain rules match some messages). So every message
#      costs 31 to 50 tests.
#   3. hyperfine --runs 1, each case with a --prepare that empties its
#      destination; then checks that every case filed the same number of
#      messages into the same folders (the check fails the run otherwise).
#
# mail-deliver --sieve --split stores every message of the mbox where the
# script says, in one process (each message with its own syncs, as one
# process per message would); --split --dry-run evaluates the script for
# every message and stores nothing: it measures the interpreter alone.
#
# Pigeonhole refuses to run as root; as root, its cases run as nobody
# (setpriv) in directories nobody may write.
#
# Environment:
#   BENCH_DIR=/var/tmp/postline-bench-sieve
#   MAIL_DELIVER=path      the binary (default: cargo build --release here)
#   SIEVE_TEST_EACH=1      also time sieve-test -e one process per message (0: skip)
#   SIEVE_TEST_N=1000      ... over the first this many messages only (it runs at
#                          about 20 messages a second here: all 10,000 would take
#                          8 minutes); compare its msg/s, not its time
#   SEED=1                 message generator seed
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
N=${1:-10000}
SEED=${SEED:-1}
SIEVE_TEST_EACH=${SIEVE_TEST_EACH:-1}
SIEVE_TEST_N=${SIEVE_TEST_N:-1000}
BENCH_DIR=${BENCH_DIR:-/var/tmp/postline-bench-sieve}

die() { echo "sieve.sh: $*" >&2; exit 1; }
case "$N" in ''|*[!0-9]*) die "N must be a number" ;; esac
case "$BENCH_DIR" in *[[:space:]\'\"\\\$\`]*) die "BENCH_DIR must not contain spaces, quotes or \$" ;; esac
for t in hyperfine gcc python3 procmail sieve-filter sieve-test; do
  command -v "$t" >/dev/null || die "$t is required"
done

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
chmod 755 "$BENCH_DIR"
D=$BENCH_DIR/dest
MSGS=$BENCH_DIR/msgs-$N
RES=$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$D" "$RES"
chmod 777 "$D"

if [ -n "${MAIL_DELIVER:-}" ]; then
  MD=$MAIL_DELIVER
else
  (cd "$ROOT" && cargo build --release --quiet --bin mail-deliver) || die "cargo build failed"
  MD=$ROOT/target/release/mail-deliver
fi
[ -x "$MD" ] || die "$MD is not executable"
gcc -O2 -Wall -o "$BENCH_DIR/each" "$HERE/each.c" || die "cannot compile bench/each.c"
EACH=$BENCH_DIR/each

if [ ! -f "$MSGS/.done" ]; then
  rm -rf "$MSGS"; mkdir -p "$MSGS"
  python3 "$HERE/genmsg.py" --seed "$SEED" --count "$N" --dir "$MSGS"
  python3 "$HERE/genmsg.py" --seed "$SEED" --count "$N" --mbox "$MSGS/all.mbox"
  chmod -R a+rX "$MSGS"
  touch "$MSGS/.done"
fi
LIST=$BENCH_DIR/list-$N
find "$MSGS" -name '*.eml' | sort > "$LIST"
[ "$(wc -l < "$LIST")" = "$N" ] || die "expected $N messages in $MSGS"
[ "$SIEVE_TEST_N" -le "$N" ] || SIEVE_TEST_N=$N
LIST_T=$BENCH_DIR/list-$N-first-$SIEVE_TEST_N
head -n "$SIEVE_TEST_N" "$LIST" > "$LIST_T"

# ------------------------------------------------------------- the rules ---
SIEVE=$BENCH_DIR/rules.sieve
RC=$BENCH_DIR/rules.rc
python3 - "$SIEVE" "$RC" "$D/procmail" <<'EOF'
import sys
sieve, rc, dest = sys.argv[1], sys.argv[2], sys.argv[3]
subjects = ["report", "invoice", "meeting", "announce", "patch",
            "lottery", "viagra", "winner", "urgent transfer", "unsubscribe"]
domains = ["example.com", "example.net", "lists.example.org", "a.invalid",
           "b.invalid", "c.invalid", "d.invalid", "e.invalid", "f.invalid",
           "g.invalid"]
rules = []  # (sieve test, procmail condition, folder)
for i in range(1, 31):
    rules.append((f'address :is "from" "nosuch{i}@example.invalid"',
                  f'^From:.*nosuch{i}@example\\.invalid', f"Blocked.{i}"))
for i, s in enumerate(subjects, 31):
    rules.append((f'header :contains "subject" "{s}"',
                  f'^Subject:.*{s}', f"Topic.{i}"))
for i, d in enumerate(domains, 41):
    rules.append((f'address :domain :is "from" "{d}"',
                  f'^From:.*@{d.replace(".", chr(92) + ".")}>', f"Domain.{i}"))
assert len(rules) == 50
with open(sieve, "w") as f:
    f.write('require ["fileinto", "mailbox"];\n')
    for t, _, folder in rules:
        f.write(f'if {t} {{ fileinto :create "{folder}"; stop; }}\n')
with open(rc, "w") as f:
    f.write(f"VERBOSE=off\nLOGFILE=/dev/null\nDEST={dest}\n")
    for _, cond, folder in rules:
        f.write(f":0\n* {cond}\n$DEST/.{folder}/\n\n")
    f.write(":0\n$DEST/\n")
EOF
chmod 644 "$SIEVE" "$RC"
"$MD" --check "$SIEVE" >/dev/null || die "mail-deliver --check rules.sieve failed"

# Pigeonhole as nobody when root.
if [ "$(id -u)" = 0 ]; then AS="setpriv --reuid=65534 --regid=65534 --clear-groups"; else AS=""; fi
PH_ENV="env -i PATH=/usr/bin:/bin HOME=$BENCH_DIR USER=nobody"

fresh() {  # fresh NAME -> shell snippet making an empty Maildir $D/NAME
  echo "rm -rf $D/$1 && mkdir -p $D/$1/cur $D/$1/new $D/$1/tmp && chmod -R 777 $D/$1"
}
# sieve-filter reads its messages from the INBOX of a mail storage: the
# messages are linked into new/ before the run (untimed).
prep_filter="$(fresh ph-filter) && find $MSGS -name '*.eml' -exec ln {} $D/ph-filter/new/ \\;"

cases=(
  -n "mail-deliver --sieve (one process per message)" -p "$(fresh md-each)"
  "$EACH $LIST $MD --sieve $SIEVE $D/md-each/"
  -n "mail-deliver --sieve --split (one process, stores)" -p "$(fresh md-split-store)"
  "$MD --sieve $SIEVE --split $D/md-split-store/ < $MSGS/all.mbox"
  -n "mail-deliver --sieve --split --dry-run (evaluation only)" -p "true"
  "$MD --sieve $SIEVE --split --dry-run $D/md-split/ < $MSGS/all.mbox > /dev/null"
  -n "procmail -m (one process per message)" -p "$(fresh procmail)"
  "$EACH $LIST procmail -m $RC"
  -n "sieve-filter -e -W (one process)" -p "$prep_filter"
  "$AS $PH_ENV sieve-filter -c /dev/null -o mail_location=maildir:$D/ph-filter -e -W $SIEVE INBOX 2>/dev/null"
)
if [ "$SIEVE_TEST_EACH" = 1 ]; then
  cases+=(
    -n "sieve-test -e (one process per message, first $SIEVE_TEST_N)" -p "$(fresh ph-test)"
    "$EACH $LIST_T $AS $PH_ENV sieve-test -c /dev/null -o mail_location=maildir:$D/ph-test -e $SIEVE /dev/stdin"
  )
fi
mkdir -p "$D/md-split"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) before the run"
echo "N=$N messages, $(du -sh "$MSGS" | cut -f1) on disk"
hyperfine --runs 1 --export-json "$RES/hyperfine.json" --export-markdown "$RES/table.md" "${cases[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------- the check ---
ok=1
count() {  # count MAILDIR -> "folder count" lines, INBOX first
  local md=$1
  printf 'INBOX %s\n' "$(find "$md/new" "$md/cur" -type f | wc -l)"
  for f in "$md"/.[!.]*/; do
    [ -d "$f" ] || continue
    printf '%s %s\n' "$(basename "$f")" "$(find "$f/new" "$f/cur" -type f | wc -l)"
  done
}
count "$D/md-each" > "$RES/md-each.counts"
cmp_cases="procmail ph-filter md-split-store"
if [ "$SIEVE_TEST_EACH" = 1 ]; then
  if [ "$SIEVE_TEST_N" = "$N" ]; then
    cmp_cases="$cmp_cases ph-test"
  else
    got=$(count "$D/ph-test" | awk '{ s += $2 } END { print s }')
    [ "$got" = "$SIEVE_TEST_N" ] || { echo "MISMATCH: sieve-test stored $got of $SIEVE_TEST_N"; ok=0; }
  fi
fi
for c in $cmp_cases; do
  count "$D/$c" > "$RES/$c.counts"
  if ! diff -u "$RES/md-each.counts" "$RES/$c.counts" > "$RES/$c.diff"; then
    echo "MISMATCH: $c filed differently from mail-deliver (see $RES/$c.diff)"; ok=0
  fi
done
total=$(awk '{ s += $2 } END { print s }' "$RES/md-each.counts")
[ "$total" = "$N" ] || { echo "MISMATCH: mail-deliver stored $total of $N"; ok=0; }
echo "folders (mail-deliver):"; column -t "$RES/md-each.counts" | sed 's/^/  /'
cat "$RES/table.md"
echo "results: $RES"
[ "$ok" = 1 ] || die "the cases disagree"
