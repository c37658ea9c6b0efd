#!/usr/bin/env bash
# bench/send.sh [N] - mail-send and mail-queue next to msmtp, swaks and
# Postfix's own sendmail, submitting to the same Postfix, measured the same way.
#
#   bench/send.sh                 # N=1000
#   RUNS=1 bench/send.sh 100      # quick
#   POSTLINE_BIN=target/release bench/send.sh    # our tools from there (no build)
#   POSTLINE_BIN=none bench/send.sh              # peers only
#
# What it does (everything under $BENCH_DIR/send, default /var/tmp/postline-bench/send):
#   1. Generates N deterministic messages (bench/genmsg.py, seed 1, 2-8 KB).
#   2. Starts a private Postfix and Dovecot (bench/servers.sh) on free
#      127.0.0.1 ports: Postfix accepts anything for sink.test, queues it and
#      hands it to its discard transport, so delivery costs the same whatever
#      the client; Dovecot only answers Postfix's SASL questions for the
#      submission port (STARTTLS required, then AUTH PLAIN). Both are stopped
#      on exit.
#   3. One hyperfine run, "each": one process per message (bench/each.c: one
#      posix_spawn + wait per message file, the file on stdin), for
#        spawn floor    each -> /bin/true
#        mail-send      SMTP, plain, --tls none
#        msmtp          SMTP, plain
#        swaks          SMTP, plain
#        sendmail       Postfix's own sendmail -C <private config>: postdrop
#                       writes the message into the local maildrop, no network
#        mail-send-tls  submission: STARTTLS (verified against the test CA) + AUTH PLAIN
#        msmtp-tls      the same with msmtp
#      Every case sends to its own recipient (ID@sink.test); before each run
#      (untimed) Postfix's queue is left to drain and the log position noted,
#      and the run is checked by counting the "status=sent" lines for that
#      recipient since then: every run must have delivered all N messages.
#   4. One hyperfine run, "flush": `mail-queue flush` of N queued messages
#      next to the floor: one client sending the same N messages over one
#      connection (Python smtplib: MAIL, RCPT, DATA per message, each message
#      in one write). The queue is filled once by mail-send through an
#      account pointing at a dead port (each message queued on "connection
#      refused"), then the account is pointed at the sink and the spool is
#      copied; each run starts from that copy. Checked: N messages at the sink
#      and `mail-queue list` empty.
#   5. Prints a markdown table per run; raw hyperfine JSON, logs and per-run
#      checks go to $BENCH_DIR/results/send-<UTC stamp>/ (send-latest links it).
#
# Environment:
#   POSTLINE_BIN=DIR    take mail-send and mail-queue from DIR (unset: build them
#                       with cargo into BENCH_TARGET_DIR; "none": peers only)
#   BENCH_DIR=/var/tmp/postline-bench   (not /tmp: slow file creation there)
#   RUNS=3              hyperfine runs per case
#   ONLY=regex          only the cases whose id matches (ids: spawn, mail-send,
#                       msmtp, swaks, sendmail, mail-send-tls, msmtp-tls,
#                       mail-queue-flush, one-session)
#   SEED=1              message generator seed
# Needs root (the private Postfix and Dovecot), hyperfine, gcc, python3,
# postfix, dovecot; msmtp and swaks are skipped with a note when missing.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
N=${1:-1000}
RUNS=${RUNS:-3}
SEED=${SEED:-1}
FROM=sender@example.net
case "$N$RUNS$SEED" in *[!0-9]*) echo "send.sh: N, RUNS and SEED must be numbers" >&2; exit 64 ;; esac
[ "$N" -gt 0 ] && [ "$RUNS" -gt 0 ] || { echo "send.sh: N and RUNS must be positive" >&2; exit 64; }

. "$HERE/lib.sh"
. "$HERE/servers.sh"
[ "$(id -u)" = 0 ] || die "run as root: the private Postfix and Dovecot need it"
for t in hyperfine gcc python3 postfix postqueue dovecot; do have "$t" || die "$t is required"; done
bench_init send
bench_each
bench_msgs "$N" "$SEED"
bench_msgs 1 "$SEED"; LIST1=$LIST      # the first message alone, for the trials
bench_msgs "$N" "$SEED"

MAIL_SEND=$(bench_bin mail-send)
MAIL_QUEUE=$(bench_bin mail-queue)

# Hermetic: no user config of msmtp, swaks or ours is read; our state (the
# queue of a failed send) stays in the work dir. Exported, so every spawned
# tool gets it without an `env` process per message.
mkdir -p "$W/xdg-config" "$W/xdg-state"
export XDG_CONFIG_HOME=$W/xdg-config XDG_STATE_HOME=$W/xdg-state HOME=$W/home
mkdir -p "$HOME"

srv_start "$W/srv" dovecot postfix
trap 'srv_stop; rm -rf "$TRASH"' EXIT
H=$SRV_HOST
LOG=$SRV_MAILLOG
PF=$SRV_POSTFIX_CONF

bench_header "bench/send.sh: N=$N, RUNS=$RUNS, SEED=$SEED"
say "# messages: $N files, $MSG_BYTES bytes (avg $(( MSG_BYTES / N )) B)"
say "# Postfix $(postconf -d -h mail_version 2>/dev/null) on 127.0.0.1:$SRV_SMTP_PORT (plain) and :$SRV_SUBMISSION_PORT (submission), discard transport; Dovecot $(dovecot --version | cut -d' ' -f1) for SASL"
say "# versions: msmtp $(pkgver msmtp), swaks $(pkgver swaks), postfix $(pkgver postfix), hyperfine $(hyperfine --version | cut -d' ' -f2), python $(python3 -c 'import sys; print(sys.version.split()[0])')"
say "# mail-send: ${MAIL_SEND:-(none)} ${MAIL_SEND:+($("$MAIL_SEND" --version 2>/dev/null | head -n 1))}; mail-queue: ${MAIL_QUEUE:-(none)}"

# ------------------------------------------------------------- checks ---
# reset (before a run): Postfix's queue drained, the log position noted.
# check (after a run): the queue drained again, then the sink's "sent" lines
# for TAG since the mark, polled until they stop growing (postlogd writes the
# log asynchronously).
sink_reset() {  # sink_reset TAG -> sh snippet
  echo "for i in \$(seq 1 3000); do [ -z \"\$(postqueue -c $PF -j 2>/dev/null)\" ] && break; sleep 0.1; done; wc -l < $LOG > $W/state/mark-$1"
}
sink_check() {  # sink_check TAG -> sh snippet printing the count
  cat <<EOF
for i in \$(seq 1 3000); do [ -z "\$(postqueue -c $PF -j 2>/dev/null)" ] && break; sleep 0.1; done
last=-1; same=0
for i in \$(seq 1 100); do
  n=\$(tail -n +\$((\$(cat $W/state/mark-$1) + 1)) $LOG | grep -c "to=<$1@sink.test>.*status=sent" || true)
  if [ "\$n" = "\$last" ]; then same=\$((same + 1)); else same=0; fi
  [ "\$same" -ge 3 ] && break
  last=\$n; sleep 0.1
done
echo "\$n"
EOF
}

# ---------------------------------------------------------- the cases ---
# add_send ID LABEL WORKLOAD NOTE ARGV...: one process per message, the message
# on stdin, to ID@sink.test (the recipient is the last argument).
add_send() {
  local id=$1 label=$2 wl=$3 note=$4; shift 4
  local argv="$*"
  add_case "$id" "$label" "$wl" "$N" "$EACH $LIST $argv $id@sink.test" "$(sink_reset "$id")" \
    "$(sink_check "$id")" "$note"
  [ -n "${C_CMD[$id]:-}" ] || return 0
  PREFLIGHT_EXPECT[$id]=1
  preflight "$id" "$EACH $LIST1 $argv $id@sink.test" || true
}

add_case spawn "spawn floor (each → true)" "spawn only" "-" "$EACH $LIST /bin/true" ":" "echo -" \
  "one posix_spawn + wait per message: the driver's own cost"

# --- how our tools are invoked: edit here if their flags change ---------------
if [ -n "$MAIL_SEND" ]; then
  add_send mail-send "mail-send" "SMTP, plain" "one connection per message" \
    "$MAIL_SEND --host $H --port $SRV_SMTP_PORT --tls none -f $FROM"
fi
if have msmtp; then
  add_send msmtp "msmtp $(pkgver msmtp)" "SMTP, plain" "one connection per message" \
    "msmtp --host=$H --port=$SRV_SMTP_PORT --auth=off --tls=off --from=$FROM"
else say "SKIP msmtp: not installed"; fi
if have swaks; then
  add_send swaks "swaks $(pkgver swaks)" "SMTP, plain" "Perl start-up per message" \
    "swaks --server $H:$SRV_SMTP_PORT --from $FROM --data - --silent 2 --to"
else say "SKIP swaks: not installed"; fi
add_send sendmail "Postfix sendmail $(pkgver postfix)" "postdrop, no network" \
  "writes + fsyncs a maildrop file; pickup/cleanup queue it after the process ends" \
  "/usr/sbin/sendmail -C $PF -f $FROM -i"
if [ -n "$MAIL_SEND" ]; then
  add_send mail-send-tls "mail-send" "submission, STARTTLS + AUTH PLAIN" "TLS verified against the test CA" \
    "$MAIL_SEND --host $H --port $SRV_SUBMISSION_PORT --tls starttls --tls-ca-file $SRV_CA --user $SRV_USER --password-command 'echo $SRV_PASSWORD' -f $FROM"
fi
if have msmtp; then
  add_send msmtp-tls "msmtp $(pkgver msmtp)" "submission, STARTTLS + AUTH PLAIN" "TLS verified against the test CA" \
    "msmtp --host=$H --port=$SRV_SUBMISSION_PORT --tls=on --tls-starttls=on --tls-trust-file=$SRV_CA --auth=plain --user=$SRV_USER --passwordeval='echo $SRV_PASSWORD' --from=$FROM"
fi

EACH_CASES=()
for id in "${CASES[@]}"; do
  [[ " ${PREFLIGHT_FAILED[*]:-} " == *" $id "* ]] || EACH_CASES+=("$id")
done
run_hyperfine each "${EACH_CASES[@]}"
say
say "## one process per message, N=$N"
table each "$N"

# ------------------------------------------------------- queue flush ---
CASES=()
Q=$W/queue
cat > "$W/one-session.py" <<EOF
# one SMTP connection carrying every message listed in argv[1] (the floor)
import smtplib, sys
paths = [l.strip() for l in open(sys.argv[1]) if l.strip()]
s = smtplib.SMTP("$H", $SRV_SMTP_PORT)
s.ehlo("bench.example.net")
for p in paths:
    with open(p, "rb") as f:
        s.sendmail("$FROM", ["one-session@sink.test"], f.read())
s.quit()
EOF
add_case one-session "floor: one connection (Python smtplib)" "N messages, 1 connection" "$N" \
  "python3 $W/one-session.py $LIST" "$(sink_reset one-session)" "$(sink_check one-session)" \
  "no process per message; Postfix still queues (fsyncs) each"

# The queue: a config whose default account is the sink, first at a dead port.
# --- how our tools are invoked (queue): edit here if the config keys or flags change ---
queue_config() {  # queue_config PORT
  mkdir -p "$Q"
  cat > "$Q/config.toml" <<EOF
[account.sink]
host = "$H"
port = $1
tls = "none"
default = true

[queue]
dir = "$Q/spool"
EOF
}
cat > "$W/queue-count.py" <<'EOF'
# entries in `mail-queue list --json` on stdin (one JSON array, or one object per line)
import json, sys
text = sys.stdin.read().strip()
if not text:
    print(0)
else:
    try:
        v = json.loads(text)
        print(len(v) if isinstance(v, list) else len(v.get("entries", [v])))
    except ValueError:
        print(sum(1 for l in text.splitlines() if l.strip().startswith("{")))
EOF
queue_count() { "$MAIL_QUEUE" --config "$Q/config.toml" list --json 2>/dev/null | python3 "$W/queue-count.py"; }
if [ -n "$MAIL_SEND" ] && [ -n "$MAIL_QUEUE" ]; then
  say "filling the queue: $N messages through mail-send to a dead port ..."
  discard "$Q"
  read -r DEAD_PORT < <(srv_free_ports 1)
  queue_config "$DEAD_PORT"
  if "$EACH" "$LIST" "$MAIL_SEND" --config "$Q/config.toml" -f "$FROM" mail-queue-flush@sink.test 2> "$W/state/fill.log" \
     && [ "$(queue_count)" = "$N" ]; then
    queue_config "$SRV_SMTP_PORT"
    cp -a "$Q/spool" "$Q/spool.template"
    cat > "$W/state/queue-check.sh" <<EOF
$(sink_check mail-queue-flush)
left=\$("$MAIL_QUEUE" --config "$Q/config.toml" list --json 2>/dev/null | python3 "$W/queue-count.py")
[ "\$left" = 0 ] || echo "\$n-delivered-but-queue-not-empty"
EOF
    add_case mail-queue-flush "mail-queue flush" "N queued messages → sink" "$N" \
      "$MAIL_QUEUE --config $Q/config.toml flush" \
      "rm -rf $Q/spool && cp -a $Q/spool.template $Q/spool && $(sink_reset mail-queue-flush)" \
      "bash $W/state/queue-check.sh" "one connection per destination"
  else
    say "SKIP mail-queue-flush: filling the queue failed (queue holds $(queue_count 2>/dev/null || echo '?') entries, want $N):"
    tail -n 5 "$W/state/fill.log" | sed 's/^/    /'
    # TODO(coordinator): if mail-send cannot queue through a config account,
    # fill $Q/spool here by whatever mail-queue offers, then keep the rest.
  fi
fi
run_hyperfine flush "${CASES[@]}"
say
say "## queue flush and its floor, N=$N"
table flush "$N"
say
bench_end
