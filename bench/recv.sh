#!/usr/bin/env bash
# bench/recv.sh [N] - the receiving side: mail-recv storing into a Maildir
# before its 250, next to Postfix smtpd -> queue -> LMTP -> Dovecot, both fed
# by Postfix's smtp-source with the same N messages over the same sessions.
#
#   bench/recv.sh                          # N=1000, 20 sessions, 5 KB
#   ROUNDS=1 bench/recv.sh 100             # quick
#   POSTLINE_BIN=target/release bench/recv.sh   # our mail-recv from there (no build)
#   POSTLINE_BIN=none bench/recv.sh             # Postfix only
#
# What it does (everything under $BENCH_DIR/recv, default /var/tmp/postline-bench/recv):
#   1. Starts a private Dovecot and Postfix (bench/servers.sh) on free
#      127.0.0.1 ports; Postfix also takes bench.test, whose mail its LMTP
#      client hands to Dovecot (user bench, a Maildir, mail_fsync=optimized,
#      Dovecot's default). Stopped on exit.
#   2. Each round runs both cases, in alternating order (the disk's drift
#      spreads over both instead of landing on whichever ran last):
#        mail-recv  `mail-recv --listen 127.0.0.1:PORT --domain bench.test
#                   --deliver DIR/{local}/ --max-sessions 2*SESSIONS` (room
#                   for sessions still closing as the next ones connect), started (untimed) on a fresh
#                   Maildir before the run and stopped after it; its 250
#                   means the message is in new/, fsynced.
#        postfix    smtpd -> queue (fsync) -> qmgr -> lmtp -> Dovecot LMTP
#                   -> Maildir; the INBOX is emptied (doveadm expunge,
#                   untimed) before the run.
#      The clock starts before smtp-source and stops when the Maildir holds
#      all N messages (new/ + cur/): for Postfix that is after its queue has
#      handed every message to Dovecot, for mail-recv at smtp-source's end.
#      `smtp-source -s SESSIONS -m N -l SIZE -f sender@remote.test
#      -t bench@bench.test 127.0.0.1:PORT`: one message per connection.
#   3. Every run is checked (exactly N stored, smtp-source exit 0, nothing
#      left in Postfix's queue); prints a markdown table (median msg/s over
#      the rounds); raw times go to $BENCH_DIR/results/recv-<UTC stamp>/.
#
# Environment:
#   POSTLINE_BIN=DIR    take mail-recv from DIR (unset: build with cargo into
#                       BENCH_TARGET_DIR; "none": Postfix only)
#   BENCH_DIR=/var/tmp/postline-bench   (not /tmp: slow file creation there)
#   ROUNDS=3            rounds (each case once per round)
#   SESSIONS=20         concurrent smtp-source sessions
#   SIZE=5120           message size in bytes (smtp-source -l)
#   ONLY=regex          only the cases whose id matches (mail-recv, postfix)
# Needs root (the private Dovecot and Postfix), smtp-source (package
# postfix), doveadm, python3.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
N=${1:-1000}
ROUNDS=${ROUNDS:-3}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-5120}
case "$N$ROUNDS$SESSIONS$SIZE" in *[!0-9]*) echo "recv.sh: N, ROUNDS, SESSIONS and SIZE must be numbers" >&2; exit 64 ;; esac
[ "$N" -gt 0 ] && [ "$ROUNDS" -gt 0 ] && [ "$SESSIONS" -gt 0 ] || { echo "recv.sh: N, ROUNDS and SESSIONS must be positive" >&2; exit 64; }

. "$HERE/lib.sh"
. "$HERE/servers.sh"
[ "$(id -u)" = 0 ] || die "run as root: the private Dovecot and Postfix need it"
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SMTP_SOURCE" ] || die "smtp-source is required (Debian package postfix)"
for t in python3 dovecot doveadm postfix postconf; do have "$t" || die "$t is required"; done
bench_init recv
MAIL_RECV=$(bench_bin mail-recv)
mkdir -p "$W/xdg-config" "$W/xdg-state" "$W/home"
export XDG_CONFIG_HOME=$W/xdg-config XDG_STATE_HOME=$W/xdg-state HOME=$W/home

srv_start "$W/srv" dovecot postfix
trap 'srv_stop; rm -rf "$TRASH"' EXIT

# Postfix: bench.test goes over LMTP to Dovecot (the sink.test setup of
# servers.sh stays as it is for the other benchmarks).
echo "bench.test lmtp:inet:$SRV_HOST:$SRV_LMTP_PORT" >> "$SRV_POSTFIX_CONF/transport"
postconf -c "$SRV_POSTFIX_CONF" -e "virtual_mailbox_domains = sink.test bench.test" \
  "lmtp_destination_concurrency_limit = $SESSIONS" "lmtp_tls_security_level = none"
postfix -c "$SRV_POSTFIX_CONF" reload > /dev/null 2>&1 || die "postfix reload failed"
for ((i = 0; i < 200; i++)); do grep -q 'reload' "$SRV_MAILLOG" 2>/dev/null && break; sleep 0.05; done
BOX=$SRV_MAILDIR
DC=$SRV_DOVECOT_CONF

count() { find "$1/new" "$1/cur" -type f 2>/dev/null | wc -l; }
now_s() { date +%s.%N; }

# wait_for DIR TARGET TIMEOUT_S: until DIR holds TARGET messages (0) or the time is up (1)
wait_for() {
  local end=$(( $(date +%s) + $3 ))
  while [ "$(count "$1")" -lt "$2" ]; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.01
  done
}

source_mail() {  # source_mail PORT COUNT
  "$SMTP_SOURCE" -s "$SESSIONS" -m "$2" -l "$SIZE" -f sender@remote.test -t bench@bench.test "$SRV_HOST:$1"
}

# ---------------------------------------------------------------- cases ---
# Each case: reset (untimed), then run N (timed), then check. A run prints
# "SECONDS STORED" on stdout.
RECV_PID=
recv_stop() {
  if [ -n "$RECV_PID" ]; then
    kill -TERM "$RECV_PID" 2>/dev/null || true
    wait "$RECV_PID" 2>/dev/null || true
    RECV_PID=
  fi
}
trap 'recv_stop; srv_stop; rm -rf "$TRASH"' EXIT

run_mail_recv() {  # run_mail_recv COUNT
  local n=$1 port s e D=$W/recv-dest
  discard "$D"
  mkdir -p "$D/bench/new" "$D/bench/cur" "$D/bench/tmp"
  read -r port < <(srv_free_ports 1)
  "$MAIL_RECV" --listen "$SRV_HOST:$port" --domain bench.test --hostname recv.bench.test \
    --max-sessions $((2 * SESSIONS)) --deliver "$D/{local}/" > "$W/mail-recv.log" 2>&1 &
  RECV_PID=$!
  srv_wait_port "$port" || { recv_stop; echo "mail-recv did not listen (see $W/mail-recv.log)" >&2; return 1; }
  sync
  s=$(now_s)
  source_mail "$port" "$n" > "$W/smtp-source.log" 2>&1 || { recv_stop; echo "smtp-source failed (see $W/smtp-source.log)" >&2; return 1; }
  wait_for "$D/bench" "$n" 300 || true
  e=$(now_s)
  recv_stop
  echo "$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.4f", b - a }') $(count "$D/bench")"
}

run_postfix() {  # run_postfix COUNT
  local n=$1 s e
  doveadm -c "$DC" expunge -u "$SRV_USER" mailbox INBOX all > /dev/null 2>&1 || true
  [ "$(count "$BOX")" = 0 ] || { echo "the INBOX is not empty after expunge" >&2; return 1; }
  srv_queue_wait 60 || { echo "Postfix's queue is not empty" >&2; return 1; }
  sync
  s=$(now_s)
  source_mail "$SRV_SMTP_PORT" "$n" > "$W/smtp-source.log" 2>&1 || { echo "smtp-source failed (see $W/smtp-source.log)" >&2; return 1; }
  wait_for "$BOX" "$n" 300 || true
  e=$(now_s)
  srv_queue_wait 60 || echo "Postfix's queue did not drain" >&2
  echo "$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.4f", b - a }') $(count "$BOX")"
}

declare -A LABEL=(
  [mail-recv]="mail-recv --listen --deliver Maildir"
  [postfix]="postfix $(postconf -d -h mail_version 2>/dev/null || echo ?) smtpd -> queue -> LMTP -> Dovecot $(pkgver dovecot-core)"
)
bench_header "bench/recv.sh: $N messages of $SIZE bytes over $SESSIONS concurrent sessions (smtp-source), until durable in a Maildir"
IDS=()
for id in mail-recv postfix; do
  if [ -n "${ONLY:-}" ] && ! [[ $id =~ $ONLY ]]; then continue; fi
  if [ "$id" = mail-recv ] && [ -z "$MAIL_RECV" ]; then continue; fi
  # A one-message trial first: a broken case costs seconds, not a round.
  if got=$("run_${id//-/_}" 1) && [ "${got#* }" = 1 ]; then
    IDS+=("$id")
  else
    say "SKIP $id: its one-message trial stored '${got#* }', expected 1"
    echo "| ${LABEL[$id]} | - | - | - | 0 | **SKIPPED**: its one-message trial failed |" >> "$RES/skipped.md"
  fi
done

for ((r = 0; r < ROUNDS; r++)); do
  order=("${IDS[@]}")
  if (( r % 2 )) && [ "${#IDS[@]}" = 2 ]; then order=("${IDS[1]}" "${IDS[0]}"); fi
  for id in "${order[@]}"; do
    if got=$("run_${id//-/_}" "$N"); then
      say "round $((r + 1)): $id ${got% *} s, ${got#* } stored"
      echo "$got" >> "$RES/$id.runs"
    else
      say "round $((r + 1)): $id FAILED"
      echo "- 0" >> "$RES/$id.runs"
    fi
  done
done

say
say "## Receiving: $N messages of $SIZE bytes, $SESSIONS sessions, until durable"
for id in "${IDS[@]}"; do printf '%s\t%s\n' "$id" "${LABEL[$id]}"; done > "$RES/cases.tsv"
python3 - "$RES" "$N" <<'PY' | tee -a "$RES/table.md"
import os, sys
res, n = sys.argv[1], int(sys.argv[2])
print("| receiver | msg/s | median s | min-max s | runs | check |")
print("|---|--:|--:|--:|--:|---|")
for line in open(os.path.join(res, "cases.tsv")):
    cid, label = line.rstrip("\n").split("\t")
    runs = [l.split() for l in open(os.path.join(res, cid + ".runs"))]
    times = sorted(float(t) for t, _ in runs if t != "-")
    bad = [c for t, c in runs if t == "-" or int(c) != n]
    check = "ok" if not bad and times else "**FAILED** stored " + "/".join(c for _, c in runs) + " want %d" % n
    if not times:
        print("| %s | - | - | - | %d | %s |" % (label, len(runs), check))
        continue
    k = len(times)
    med = times[k // 2] if k % 2 else (times[k // 2 - 1] + times[k // 2]) / 2
    print("| %s | %.0f | %.3f | %.3f-%.3f | %d | %s |" % (label, n / med, med, times[0], times[-1], k, check))
PY
[ -s "$RES/skipped.md" ] && tee -a "$RES/table.md" < "$RES/skipped.md"
bench_end
