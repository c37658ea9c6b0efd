#!/usr/bin/env bash
# bench/fetch.sh [N] - mail-fetch next to fetchmail, getmail6, mbsync and fdm,
# fetching the same N messages from the same Dovecot into a fresh Maildir.
#
#   bench/fetch.sh                # N=10000
#   RUNS=1 bench/fetch.sh 500     # quick
#   POSTLINE_BIN=target/release bench/fetch.sh   # our mail-fetch from there (no build)
#   POSTLINE_BIN=none bench/fetch.sh             # peers only
#
# What it does (everything under $BENCH_DIR/fetch, default /var/tmp/postline-bench/fetch):
#   1. Generates N deterministic messages (bench/genmsg.py, seed 2, 2-8 KB)
#      and makes a template Maildir of them (cur/ files named the way Dovecot
#      names them, with S= and W= sizes), owned by nobody.
#   2. Starts a private Dovecot (bench/servers.sh) on free 127.0.0.1 ports,
#      one user (bench / secret) whose mail processes run as nobody; stopped
#      on exit.
#   3. Before every run (untimed): the user's INBOX is replaced by hard links
#      to the template (the same N messages, a new UIDVALIDITY), Dovecot
#      indexes it (doveadm index), the destination and the tool's state are
#      replaced by fresh ones, and the disk is synced. Old directories go to a
#      trash emptied at the end (see lib.sh: discard).
#   4. One hyperfine run per protocol, every tool in it, plain POP3 / IMAP on
#      loopback (no TLS for anyone):
#        mail-fetch   --pop3 / --imap ... --maildir DEST      (delete mode)
#        fetchmail    mda "safecat DEST/tmp DEST/new"        (delete mode;
#                     safecat fsyncs each file: a durable Maildir MDA)
#        getmail6     its Maildir destination, delete = true; run as nobody
#                     (it refuses to deliver as root)
#        fdm          maildir action (delete mode), when installed
#        mbsync       IMAP only, Sync Pull: KEEPS the mail on the server (its
#                     nature: it synchronises, it does not fetch-and-delete)
#        floors       doveadm fetch text (Dovecot reading the mail out, no
#                     network) and bench/readout.py (one pipelined POP3 RETR
#                     stream / one IMAP UID FETCH 1:*, nothing stored)
#      Every run is checked: DEST holds N messages (new/ + cur/) and the
#      server INBOX is empty (delete mode) or still holds N (mbsync, floors).
#   5. Prints a markdown table per protocol; raw hyperfine JSON, logs and
#      per-run checks go to $BENCH_DIR/results/fetch-<UTC stamp>/.
#
# Environment:
#   POSTLINE_BIN=DIR    take mail-fetch from DIR (unset: build it with cargo
#                       into BENCH_TARGET_DIR; "none": peers only)
#   BENCH_DIR=/var/tmp/postline-bench   (not /tmp: slow file creation there)
#   RUNS=1              hyperfine runs per case per round
#   ROUNDS=3            rounds over all the cases of a protocol, in rotated
#                       order, so that the disk's drift (file creation gets
#                       slower after mass deletions on this ext4) spreads
#                       over every tool instead of landing on whichever
#                       ran last; the table takes the median of all runs
#   ONLY=regex          only the cases whose id matches (ids: mail-fetch-pop3,
#                       fetchmail-pop3, getmail-pop3, fdm-pop3, doveadm-fetch-pop3,
#                       readout-pop3, and the same with -imap, plus mbsync-imap)
#   PROTOCOLS="pop3 imap"
#   SEED=2              message generator seed
#   MAIL_FETCH_B=PATH   also time this mail-fetch binary, in the same rounds
#                       (case ids mail-fetch-b-pop3/-imap): an A/B of two
#                       builds under the same disk and load
#   PROBE=1             count each tool's sync calls in a one-message run
#                       (strace -f -c; 0: skip)
# Needs root (the private Dovecot), hyperfine, python3, dovecot; the peers
# are skipped with a note when missing.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
N=${1:-10000}
RUNS=${RUNS:-1}
ROUNDS=${ROUNDS:-3}
SEED=${SEED:-2}
PROTOCOLS=${PROTOCOLS:-pop3 imap}
PROBE=${PROBE:-1}
case "$N$RUNS$ROUNDS$SEED" in *[!0-9]*) echo "fetch.sh: N, RUNS, ROUNDS and SEED must be numbers" >&2; exit 64 ;; esac
[ "$N" -gt 0 ] && [ "$RUNS" -gt 0 ] && [ "$ROUNDS" -gt 0 ] || { echo "fetch.sh: N, RUNS and ROUNDS must be positive" >&2; exit 64; }

. "$HERE/lib.sh"
. "$HERE/servers.sh"
[ "$(id -u)" = 0 ] || die "run as root: the private Dovecot needs it"
for t in hyperfine python3 dovecot doveadm setpriv; do have "$t" || die "$t is required"; done
bench_init fetch
MAIL_FETCH=$(bench_bin mail-fetch)
MAIL_DELIVER=$(bench_bin mail-deliver)
MAIL_FETCH_B=${MAIL_FETCH_B:-}
[ -z "$MAIL_FETCH_B" ] || [ -x "$MAIL_FETCH_B" ] || die "MAIL_FETCH_B=$MAIL_FETCH_B is not an executable"
mkdir -p "$W/xdg-config" "$W/xdg-state" "$W/home"
# Hermetic: no user config of any tool is read; each tool's state is under $W.
export XDG_CONFIG_HOME=$W/xdg-config XDG_STATE_HOME=$W/xdg-state HOME=$W/home FETCHMAILHOME=$W/fetchmail

srv_start "$W/srv" dovecot
trap 'srv_stop; rm -rf "$TRASH"' EXIT
H=$SRV_HOST U=$SRV_USER P=$SRV_PASSWORD
MUID=$SRV_MAIL_UID MGID=$SRV_MAIL_GID
DC=$SRV_DOVECOT_CONF
BOX=$SRV_MAILDIR
DISCARD=$W/bin/discard
export READOUT_EXPECT=$N   # what bench/readout.py must read (1 in the trial runs)
mkdir -p "$FETCHMAILHOME"

# --------------------------------------------------------- the mailbox ---
# template DIR COUNT: a Maildir of the first COUNT messages, as Dovecot would
# name them (S= file size, W= size with CRLF line ends), owned by the mail user.
template() {
  local dir=$1 count=$2
  [ "$(find "$dir/cur" -type f 2>/dev/null | wc -l)" = "$count" ] && return 0
  discard "$dir"
  mkdir -p "$dir/cur" "$dir/new" "$dir/tmp"
  python3 - "$LIST" "$dir" "$count" <<'PY'
import os, sys
lst, d, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i, path in enumerate(l.strip() for l in open(lst)):
    if i >= count:
        break
    data = open(path, "rb").read()
    name = "%d.M%dP1.bench,S=%d,W=%d:2," % (1764000000 + i, i, len(data), len(data) + data.count(b"\n"))
    with open(os.path.join(d, "cur", name), "wb") as f:
        f.write(data)
PY
  chown -R "$MUID:$MGID" "$dir"
  chmod -R go-rwx "$dir"
}
bench_msgs "$N" "$SEED"
# Named after the generator's seed and version: a changed genmsg.py or SEED
# makes new templates instead of reusing stale ones.
GEN=$(cut -d' ' -f1,2 "$MSGS/.stamp" | tr ' ' -)
TPL=$W/template-$GEN-$N
TPL1=$W/template-$GEN-1
for old in "$W"/template-*; do
  case "$old" in "$TPL"|"$TPL1"|"$W/template-*") ;; *) discard "$old" ;; esac
done
template "$TPL" "$N"
template "$TPL1" 1
TPL_BYTES=$(du -sb "$TPL" | cut -f1)
# The messages as one mbox (mboxrd), for the storing floor (and its first
# message alone, for the one-message trial).
MBOX=$W/input-$GEN-$N.mbox
MBOX1=$W/input-$GEN-1.mbox
for pair in "$MBOX $N" "$MBOX1 1"; do
  set -- $pair
  [ -s "$1" ] || python3 - "$LIST" "$1" "$2" <<'PY'
import re, sys
lst, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(out, "wb") as o:
    for i, path in enumerate(l.strip() for l in open(lst)):
        if i >= count:
            break
        data = open(path, "rb").read()
        if not data.endswith(b"\n"):
            data += b"\n"
        o.write(b"From bench@example.net Thu Jan  1 00:00:00 1970\n")
        o.write(re.sub(rb"(?m)^(>*From )", rb">\1", data))
        o.write(b"\n")
PY
done

bench_header "bench/fetch.sh: N=$N, RUNS=$RUNS, SEED=$SEED"
say "# mailbox: $N messages, $MSG_BYTES bytes (avg $(( MSG_BYTES / N )) B), Maildir with Dovecot indexes"
say "# Dovecot $(dovecot --version | cut -d' ' -f1) on 127.0.0.1: pop3 $SRV_POP3_PORT, imap $SRV_IMAP_PORT (plain; mail_fsync=optimized)"
say "# versions: fetchmail $(pkgver fetchmail), getmail6 $(pkgver getmail6), isync/mbsync $(pkgver isync), fdm $(pkgver fdm), safecat $(pkgver safecat), dovecot $(pkgver dovecot-core), hyperfine $(hyperfine --version | cut -d' ' -f2)"
say "# mail-fetch: ${MAIL_FETCH:-(none)} ${MAIL_FETCH:+($("$MAIL_FETCH" --version 2>/dev/null | head -n 1))}"

# ------------------------------------------------------ resets, checks ---
# reset TEMPLATE DEST KIND [OWNER] [EXTRA...] -> sh snippet: the INBOX refilled
# from TEMPLATE and indexed, DEST fresh (KIND maildir: DEST/{cur,new,tmp};
# dir: DEST only; none: no DEST), owned by OWNER; EXTRA: more paths discarded.
reset() {
  local tpl=$1 dest=$2 kind=$3 owner=${4:-}; shift 3; [ $# -gt 0 ] && shift
  local s="$DISCARD $BOX $dest $* && mkdir -p $BOX && cp -al $tpl/. $BOX/ && chown $MUID:$MGID $BOX $BOX/cur $BOX/new $BOX/tmp"
  s="$s && doveadm -c $DC index -u $U INBOX"
  case "$kind" in
    maildir) s="$s && mkdir -p $dest/cur $dest/new $dest/tmp" ;;
    dir) s="$s && mkdir -p $dest" ;;
  esac
  [ -n "$owner" ] && [ "$kind" != none ] && s="$s && chown -R $owner $dest"
  echo "$s"
}
LEFT="doveadm -c $DC mailbox status -u $U messages INBOX | sed 's/.*messages=//'"
# check_delete DEST: the number stored in DEST, if the server INBOX is now empty
check_delete() {
  echo "l=\$($LEFT); s=\$(find $1 -type f \\( -path '*/new/*' -o -path '*/cur/*' \\) | wc -l); if [ \"\$l\" = 0 ]; then echo \$s; else echo \"stored-\$s-left-on-server-\$l\"; fi"
}
# check_keep DEST: the number stored in DEST, if the server still holds as many
check_keep() {
  echo "l=\$($LEFT); s=\$(find $1 -type f \\( -path '*/new/*' -o -path '*/cur/*' \\) | wc -l); if [ \"\$l\" = \"\$s\" ]; then echo \$s; else echo \"stored-\$s-on-server-\$l\"; fi"
}
# check_left: the number still on the server (floors store nothing)
check_left() { echo "$LEFT"; }

# add_fetch ID LABEL WORKLOAD NOTE CMD DEST KIND CHECK-FN [OWNER] [EXTRA-RESET-PATHS...]
add_fetch() {
  local id=$1 label=$2 wl=$3 note=$4 cmd=$5 dest=$6 kind=$7 chk=$8 owner=${9:-}
  shift 8; [ $# -gt 0 ] && shift
  add_case "$id" "$label" "$wl" "$N" "$cmd" "$(reset "$TPL" "$dest" "$kind" "$owner" "$@")" \
    "$($chk "$dest")" "$note"
  [ -n "${C_CMD[$id]:-}" ] || return 0
  PREFLIGHT_EXPECT[$id]=1
  local r1
  r1=$(reset "$TPL1" "$dest" "$kind" "$owner" "$@")
  preflight "$id" "READOUT_EXPECT=1; $cmd" "$r1" || return 0
  # The durability each tool pays: sync calls in a one-message run (the
  # tool and its children; the server's own are not counted).
  if [ "$PROBE" = 1 ] && have strace && [ "$kind" != none ]; then
    local out=$W/state/strace-$id syncs
    bash -c "$r1" > /dev/null 2>&1
    strace -f -c -o "$out" -e trace=fsync,fdatasync,syncfs,sync_file_range,msync \
      bash -c "READOUT_EXPECT=1; $cmd" > /dev/null 2>&1 || true
    syncs=$(awk '$NF ~ /^(fsync|fdatasync|syncfs|sync_file_range|msync)$/ { d = d sprintf("%s%s %d", (d ? " + " : ""), $NF, $4) } END { print (d ? d : "none") }' "$out")
    C_NOTE[$id]="syncs in a 1-message run: $syncs${C_NOTE[$id]:+; ${C_NOTE[$id]}}"
  fi
}

# ------------------------------------------------------------ the cases ---
AS_NOBODY="setpriv --reuid=$MUID --regid=$MGID --clear-groups"
fetchmailrc() {  # fetchmailrc PROTO PORT DEST -> path of the rc file
  local f=$W/fetchmailrc-$1
  cat > "$f" <<EOF
set no syslog
poll $H service $2 protocol $1 auth password
  user "$U" there with password "$P" is "root" here
  sslproto ''
  fetchall
  mda "safecat $3/tmp $3/new"
EOF
  chmod 600 "$f"
  echo "$f"
}
getmailrc() {  # getmailrc PROTO PORT DEST -> the getmail directory (owned by nobody)
  local g=$W/getmail-$1 type=SimplePOP3Retriever extra=
  [ "$1" = imap ] && type=SimpleIMAPRetriever extra='mailboxes = ("INBOX",)'
  mkdir -p "$g"
  cat > "$g/getmailrc" <<EOF
[retriever]
type = $type
server = $H
port = $2
username = $U
password = $P
$extra

[destination]
type = Maildir
path = $3/

[options]
read_all = true
delete = true
verbose = 0
message_log_syslog = false
EOF
  chown -R "$MUID:$MGID" "$g"
  chmod 600 "$g/getmailrc"
  echo "$g"
}
fdmconf() {  # fdmconf PROTO PORT DEST -> path of the config
  local f=$W/fdm-$1.conf
  cat > "$f" <<EOF
set lock-file "$W/fdm-$1.lock"
account "bench" $1 server "$H" port $2 user "$U" pass "$P"
action "md" maildir "$3"
match all action "md"
EOF
  chmod 600 "$f"
  echo "$f"
}

add_protocol_cases() {  # add_protocol_cases PROTO PORT
  local pr=$1 port=$2 PR D g
  PR=$(echo "$pr" | tr a-z A-Z)
  # --- how our tool is invoked: edit here if its flags change ---
  if [ -n "$MAIL_FETCH" ]; then
    D=$W/dest/mail-fetch-$pr
    add_fetch "mail-fetch-$pr" "mail-fetch" "$PR → Maildir (delete)" "" \
      "$MAIL_FETCH --$pr $H:$port --tls none --user $U --password-command 'echo $P' --maildir $D/" \
      "$D" maildir check_delete "" "$XDG_STATE_HOME/postline"
  fi
  if [ -n "$MAIL_FETCH_B" ]; then
    # A/B: another build of mail-fetch in the same rounds (same resets).
    D=$W/dest/mail-fetch-b-$pr
    add_fetch "mail-fetch-b-$pr" "mail-fetch (B: $MAIL_FETCH_B)" "$PR → Maildir (delete)" "" \
      "$MAIL_FETCH_B --$pr $H:$port --tls none --user $U --password-command 'echo $P' --maildir $D/" \
      "$D" maildir check_delete "" "$XDG_STATE_HOME/postline"
  fi
  if have fetchmail && have safecat; then
    D=$W/dest/fetchmail-$pr
    local note="one safecat process per message (fsync of the file)"
    [ "$pr" = imap ] && note="$note; marks and expunges each message (its default)"
    add_fetch "fetchmail-$pr" "fetchmail $(pkgver fetchmail | cut -d- -f1)" "$PR → mda safecat → Maildir (delete)" "$note" \
      "fetchmail --nosyslog -s -f $(fetchmailrc "$pr" "$port" "$D")" "$D" maildir check_delete "" "$FETCHMAILHOME/.fetchids"
  else say "SKIP fetchmail-$pr: fetchmail or safecat not installed"; fi
  if have getmail; then
    D=$W/dest/getmail-$pr
    g=$(getmailrc "$pr" "$port" "$D")
    add_fetch "getmail-$pr" "getmail6 $(pkgver getmail6 | cut -d- -f1)" "$PR → Maildir (delete)" "run as nobody (refuses root)" \
      "$AS_NOBODY getmail --getmaildir=$g --rcfile=$g/getmailrc" "$D" maildir check_delete "$MUID:$MGID" "$g/oldmail*"
  else say "SKIP getmail-$pr: getmail6 not installed"; fi
  if have fdm; then
    D=$W/dest/fdm-$pr
    add_fetch "fdm-$pr" "fdm $(pkgver fdm | cut -d+ -f1)" "$PR → maildir (delete)" "" \
      "fdm -q -f $(fdmconf "$pr" "$port" "$D") fetch" "$D" dir check_delete
  else say "SKIP fdm-$pr: not installed"; fi
  if [ "$pr" = imap ]; then
    if have mbsync; then
      D=$W/dest/mbsync-imap
      cat > "$W/mbsyncrc" <<EOF
IMAPAccount bench
Host $H
Port $port
User $U
Pass $P
SSLType None
AuthMechs LOGIN

IMAPStore far
Account bench

MaildirStore near
Path $D/
Inbox $D/INBOX

Channel bench
Far :far:
Near :near:
Patterns INBOX
Create Near
Sync Pull
SyncState *
EOF
      add_fetch mbsync-imap "mbsync $(pkgver isync | cut -d- -f1)" "IMAP → Maildir (**keeps** mail on the server)" \
        "Sync Pull: it synchronises, it cannot fetch-and-delete" \
        "mbsync -c $W/mbsyncrc -q bench" "$D" dir check_keep
    else say "SKIP mbsync-imap: isync not installed"; fi
  fi
  if [ -n "$MAIL_DELIVER" ]; then
    # The storing floor: the same N messages stored the way mail-fetch
    # stores them (grouped: one syncfs and one fsync of new/ per batch),
    # with no server in the way. mail-fetch's distance to this and to the
    # read-out floor says which side to work on.
    D=$W/dest/store-floor-$pr
    add_fetch "store-floor-$pr" "floor: mail-deliver --split" "the same messages stored, no network" "grouped syncs, as mail-fetch stores" \
      "m=$MBOX; [ \"\${READOUT_EXPECT:-}\" = 1 ] && m=$MBOX1; $MAIL_DELIVER --split $D/ < \$m" "$D" maildir check_keep
  fi
  add_fetch "doveadm-fetch-$pr" "floor: doveadm fetch text" "Dovecot reads the mail out, no network" "nothing stored" \
    "doveadm -c $DC fetch -u $U text mailbox INBOX all > /dev/null" "$W/dest/none" none check_left
  add_fetch "readout-$pr" "floor: bench/readout.py $pr" "one pipelined $PR read-out, loopback" "nothing stored" \
    "python3 $HERE/readout.py $pr $H $port $U $P \$READOUT_EXPECT" "$W/dest/none" none check_left
}

declare -A PORT=([pop3]=$SRV_POP3_PORT [imap]=$SRV_IMAP_PORT)
for pr in $PROTOCOLS; do
  case "$pr" in pop3|imap) ;; *) die "PROTOCOLS: pop3 and/or imap, not $pr" ;; esac
  CASES=()
  add_protocol_cases "$pr" "${PORT[$pr]}"
  run=()
  for id in "${CASES[@]}"; do
    [[ " ${PREFLIGHT_FAILED[*]:-} " == *" $id "* ]] || run+=("$id")
  done
  # ROUNDS rounds, each in rotated order; their runs are merged into one
  # result per case (times and checks), which the table reads.
  for ((r = 0; r < ROUNDS; r++)); do
    order=("${run[@]:r % ${#run[@]}}" "${run[@]:0:r % ${#run[@]}}")
    run_hyperfine "$pr-r$((r + 1))" "${order[@]}"
    for id in "${run[@]}"; do cat "$RES/$id.counts" >> "$RES/$id.counts.all" 2>/dev/null || true; done
  done
  for id in "${run[@]}"; do mv -f "$RES/$id.counts.all" "$RES/$id.counts" 2>/dev/null || true; done
  python3 - "$RES" "$pr" "$ROUNDS" <<'PY'
import json, sys
res, group, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
merged = {}
for r in range(1, rounds + 1):
    for x in json.load(open("%s/%s-r%d.json" % (res, group, r)))["results"]:
        m = merged.setdefault(x["command"], dict(x, times=[], exit_codes=[]))
        m["times"] += x["times"]
        m["exit_codes"] += x.get("exit_codes") or []
for m in merged.values():
    t = sorted(m["times"])
    k = len(t)
    m["median"] = t[k // 2] if k % 2 else (t[k // 2 - 1] + t[k // 2]) / 2
    m["min"], m["max"], m["mean"] = t[0], t[-1], sum(t) / k
json.dump({"results": list(merged.values())}, open("%s/%s.json" % (res, group), "w"))
PY
  say
  say "## $(echo "$pr" | tr a-z A-Z): $N messages into a fresh Maildir"
  table "$pr" "$N"
  say
done
bench_end
