#!/usr/bin/env bash
# bench/trace.sh [N] - mail-trace --json over an N-message mbox, beside cat.
#
#   bench/trace.sh              # N=100000 messages (about 540 MB of mbox)
#   bench/trace.sh 10000        # quicker
#   bench/trace.sh 20000        # the size issue 13's goal is stated for
#
# What it does (all data under $BENCH_DIR, default /var/tmp/postline-bench):
#   1. Generates an mboxrd file of N deterministic messages with
#      bench/genmsg.py (3-5 Postfix Received lines, 2-8 KB bodies; the same
#      files bench/deliver.sh uses, cached by seed and generator hash), and
#      one of N/10 messages (the first N/10 of the same set).
#   2. Builds mail-trace (release) unless MAIL_TRACE=path is given.
#   3. Reads the file once (warm page cache), checks that mail-trace
#      prints one JSON line per message and the same bytes with -j 1 (one
#      thread) as by default (one thread per CPU), then times with hyperfine
#      (--warmup 1 --runs RUNS) `mail-trace --json FILE > /dev/null`, the
#      same with -j 1, and `cat FILE > /dev/null`.
#   4. Peak RSS (/usr/bin/time -f %M) of mail-trace on N and on N/10 messages:
#      the two should be about equal (memory does not grow with the mailbox).
#   5. Prints messages per second, the ratio to cat (wall and CPU: on a
#      machine shared with other work the wall time includes waiting for a
#      core, the user+system time does not) and a markdown table;
#      raw hyperfine JSON goes to $BENCH_DIR/results/trace-<UTC stamp>/.
#
# Environment:
#   BENCH_DIR=/var/tmp/postline-bench   where everything is written
#   MAIL_TRACE=path             use this binary instead of building one
#   BENCH_TARGET_DIR=/var/tmp/postline-bench-target  cargo target dir for the build
#   RUNS=3                      hyperfine runs per command
#   SEED=1                      message generator seed
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
N=${1:-100000}
RUNS=${RUNS:-3}
SEED=${SEED:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp/postline-bench}

die() { echo "trace.sh: $*" >&2; exit 1; }
case "$N$RUNS$SEED" in *[!0-9]*) die "N, RUNS and SEED must be numbers" ;; esac
[ "$N" -ge 10 ] && [ "$RUNS" -gt 0 ] || die "N must be at least 10 and RUNS positive"
case "$BENCH_DIR" in *[[:space:]\'\"\\\$\`]*) die "BENCH_DIR must not contain spaces, quotes or \$" ;; esac
for t in hyperfine python3; do command -v "$t" >/dev/null || die "$t is required"; done
[ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) is required for peak RSS"

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$BENCH_DIR/results/trace-$STAMP
mkdir -p "$RES"
exec > >(tee "$RES/report.txt") 2>&1

# ---------------------------------------------------------------- binary ---
if [ -n "${MAIL_TRACE:-}" ]; then
  MT=$MAIL_TRACE
else
  TARGET=${BENCH_TARGET_DIR:-/var/tmp/postline-bench-target}
  echo "building mail-trace (release) into $TARGET ..."
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --quiet --bin mail-trace) \
    || die "cargo build failed"
  MT=$TARGET/release/mail-trace
fi
[ -x "$MT" ] || die "$MT is not executable"
MT=$(cd "$(dirname "$MT")" && pwd)/$(basename "$MT")

# -------------------------------------------------------------- messages ---
GEN_SHA=$(sha256sum "$HERE/genmsg.py" | cut -c1-16)
mkmbox() {  # mkmbox COUNT -> path of an mboxrd file with the first COUNT messages
  local f=$BENCH_DIR/input-s$SEED-$1-$GEN_SHA.mbox
  if [ ! -s "$f" ]; then
    rm -f "$BENCH_DIR"/input-s"$SEED"-"$1"-*.mbox
    echo "generating $1 messages into $f ..." >&2
    python3 "$HERE/genmsg.py" --seed "$SEED" --count "$1" --mbox "$f"
  fi
  echo "$f"
}
SMALL_N=$(( N / 10 ))
BIG=$(mkmbox "$N")
SMALL=$(mkmbox "$SMALL_N")
BYTES=$(wc -c < "$BIG")
cat "$BIG" "$SMALL" > /dev/null   # warm the page cache

# A correctness check before timing: one JSON line per message, no errors,
# and the same bytes on one thread as on the default (one per CPU).
lines=$("$MT" --json "$BIG" | wc -l)
[ "$lines" = "$N" ] || die "mail-trace printed $lines JSON lines for $N messages"
cmp -s <("$MT" --json "$BIG") <("$MT" --json -j 1 "$BIG") \
  || die "mail-trace --json -j 1 printed other bytes than on $(nproc) threads"

# ----------------------------------------------------------------- timing ---
hyperfine --warmup 1 --runs "$RUNS" --export-json "$RES/hyperfine.json" \
  -n cat "cat $BIG > /dev/null" \
  -n mail-trace "$MT --json $BIG > /dev/null" \
  -n mail-trace-j1 "$MT --json -j 1 $BIG > /dev/null"

med() {  # med NAME -> median seconds from the hyperfine JSON
  python3 -c 'import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    if r["command"] == sys.argv[2]:
        print("%.4f" % r["median"])' "$RES/hyperfine.json" "$1"
}
T_CAT=$(med cat)
T_MT=$(med mail-trace)
T_J1=$(med mail-trace-j1)
cpu() {  # cpu NAME -> mean user+system seconds from the hyperfine JSON
  python3 -c 'import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    if r["command"] == sys.argv[2]:
        print("%.4f" % (r["user"] + r["system"]))' "$RES/hyperfine.json" "$1"
}
C_CAT=$(cpu cat)
C_MT=$(cpu mail-trace)
C_J1=$(cpu mail-trace-j1)

rss() {  # rss FILE -> peak RSS in KB of mail-trace --json FILE
  /usr/bin/time -f '%M' -o "$RES/rss.tmp" "$MT" --json "$1" > /dev/null
  tr -dc 0-9 < "$RES/rss.tmp"; rm -f "$RES/rss.tmp"
}
RSS_BIG=$(rss "$BIG")
RSS_SMALL=$(rss "$SMALL")
RSS_CAT=$( /usr/bin/time -f '%M' cat "$BIG" 2>&1 > /dev/null | tr -dc 0-9 )

calc() { awk "BEGIN { $1 }"; }
RATE=$(calc "printf \"%.0f\", $N / $T_MT")
CAT_RATE=$(calc "printf \"%.0f\", $N / $T_CAT")
RATIO=$(calc "printf \"%.2f\", $T_MT / $T_CAT")
CPU_RATIO=$(calc "printf \"%.2f\", $C_MT / $C_CAT")
RATE_J1=$(calc "printf \"%.0f\", $N / $T_J1")
RATIO_J1=$(calc "printf \"%.2f\", $T_J1 / $T_CAT")
CPU_RATIO_J1=$(calc "printf \"%.2f\", $C_J1 / $C_CAT")
MBS_J1=$(calc "printf \"%.0f\", $BYTES / $T_J1 / 1e6")
MBS_MT=$(calc "printf \"%.0f\", $BYTES / $T_MT / 1e6")
MBS_CAT=$(calc "printf \"%.0f\", $BYTES / $T_CAT / 1e6")
MB=$(calc "printf \"%.0f\", $BYTES / 1e6")

TABLE=$RES/table.md
{
  echo "| command | messages | input | median s | msg/s | MB/s | vs cat | user+sys s | vs cat (CPU) | peak RSS |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  echo "| \`cat FILE > /dev/null\` | $N | $MB MB | $T_CAT | $CAT_RATE | $MBS_CAT | 1.00x | $C_CAT | 1.00x | $RSS_CAT KB |"
  echo "| \`mail-trace --json FILE > /dev/null\` ($(nproc) CPUs: default threads) | $N | $MB MB | $T_MT | $RATE | $MBS_MT | ${RATIO}x | $C_MT | ${CPU_RATIO}x | $RSS_BIG KB |"
  echo "| \`mail-trace --json -j 1 FILE > /dev/null\` (one thread) | $N | $MB MB | $T_J1 | $RATE_J1 | $MBS_J1 | ${RATIO_J1}x | $C_J1 | ${CPU_RATIO_J1}x | |"
  echo "| \`mail-trace --json\` on the first N/10 | $SMALL_N | | | | | | | | $RSS_SMALL KB |"
} > "$TABLE"
echo
echo "# mail-trace --json: $RATE msg/s ($MBS_MT MB/s) over $N messages ($MB MB); cat: $T_CAT s ($MBS_CAT MB/s)"
echo "# mail-trace takes ${RATIO}x the time of cat (goal: within 3x); ${CPU_RATIO}x its user+system CPU time"
echo "# on one thread (-j 1): ${RATIO_J1}x the time of cat, ${CPU_RATIO_J1}x its CPU time"
echo "# peak RSS: $RSS_BIG KB for $N messages, $RSS_SMALL KB for $SMALL_N"
echo
cat "$TABLE"
echo "# raw: $RES"
