#!/usr/bin/env bash
# bench/verify.sh [N] - mail-trace --verify over N DKIM-signed messages with
# DNS from a replay file, beside dkimpy's verifier on the same messages.
#
#   bench/verify.sh             # N=10000 messages
#   bench/verify.sh 1000        # quicker
#
# What it does (all data under $BENCH_DIR, default /var/tmp/postline-bench):
#   1. Makes a 2048-bit RSA key (openssl) and signs N messages with dkimpy
#      (relaxed/relaxed, d=bench.test, 2-4 KB bodies), written as one mboxrd
#      file, and a replay file holding the key and a DMARC record.
#   2. Builds mail-trace (release) unless MAIL_TRACE=path is given.
#   3. Times with hyperfine (--warmup 1 --runs RUNS):
#        mail-trace --verify --json --dns-replay keys.dns msgs.mbox > /dev/null
#        python3 dkimpy-verify.py msgs.mbox          (dkim.verify per message,
#          its key from a dict, in one process: no DNS, no process per message)
#      and checks first that both found every signature valid.
#   4. Prints messages per second for each; raw hyperfine JSON goes to
#      $BENCH_DIR/results/verify-<UTC stamp>/.
#   5. As root, with dnsmasq and unshare: dkimpy's own command-line
#      verifier, `dkimverify`, as it is used: one process per message, the
#      key asked of DNS. It reads only /etc/resolv.conf, so it runs in a
#      private mount namespace whose resolv.conf names a dnsmasq on
#      127.0.0.1:53 that serves the key; timed (one run) over the first
#      DKIMVERIFY_N messages, since at one process each all N would take
#      far longer than the rest.
#
# mail-trace does more per message than dkimpy here (SPF is skipped, as the
# messages carry no Received fields, but DMARC and ARC are evaluated, and
# every DNS answer goes through the loopback stub), so the comparison
# favours dkimpy.
#
# Environment:
#   BENCH_DIR=/var/tmp/postline-bench   where everything is written
#   MAIL_TRACE=path             use this binary instead of building one
#   BENCH_TARGET_DIR=/var/tmp/postline-bench-target  cargo target dir for the build
#   RUNS=3                      hyperfine runs per command
#   PYTHON=/usr/bin/python3     a Python with dkimpy (Debian: python3-dkim)
#   DKIMVERIFY_N=500            messages for step 5 (0: skip it)
set -euo pipefail
umask 022
N=${1:-10000}
BENCH_DIR=${BENCH_DIR:-/var/tmp/postline-bench}
RUNS=${RUNS:-3}
PYTHON=${PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
W="$BENCH_DIR/verify-$N"
mkdir -p "$W"

command -v hyperfine >/dev/null || { echo "bench/verify.sh: needs hyperfine" >&2; exit 1; }
"$PYTHON" -c 'import dkim' 2>/dev/null || { echo "bench/verify.sh: needs dkimpy ($PYTHON -c 'import dkim'; Debian: python3-dkim)" >&2; exit 1; }

if [ -z "${MAIL_TRACE:-}" ]; then
  TARGET=${BENCH_TARGET_DIR:-/var/tmp/postline-bench-target}
  (cd "$ROOT" && cargo build --release --locked --bin mail-trace --target-dir "$TARGET" >&2)
  MAIL_TRACE="$TARGET/release/mail-trace"
fi

if [ ! -s "$W/msgs.mbox" ]; then
  openssl genrsa -out "$W/key.pem" 2048 2>/dev/null
  P=$(openssl rsa -in "$W/key.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
  REC="v=DKIM1; k=rsa; p=$P"
  {
    echo "# bench/verify.sh keys"
    echo "sel._domainkey.bench.test. TXT \"${REC:0:200}\" \"${REC:200}\""
    echo "_dmarc.bench.test. TXT \"v=DMARC1; p=none\""
    echo "\$DEFAULT NXDOMAIN"
  } > "$W/keys.dns"
  echo "$REC" > "$W/key.txt"
  "$PYTHON" - "$W" "$N" <<'EOF'
import random, sys, dkim
w, n = sys.argv[1], int(sys.argv[2])
key = open(w + "/key.pem", "rb").read()
rnd = random.Random(1)
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
with open(w + "/msgs.mbox", "wb") as out:
    for i in range(n):
        body = "".join(
            " ".join(rnd.choice(words) for _ in range(rnd.randint(6, 12))) + "\r\n"
            for _ in range(rnd.randint(40, 80)))
        msg = ("From: Sender %d <s%d@bench.test>\r\nTo: r@example.net\r\n"
               "Subject: bench %d\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
               "Message-ID: <%d@bench.test>\r\n\r\n%s" % (i, i, i, i, body)).encode()
        sig = dkim.sign(msg, b"sel", b"bench.test", key,
                        canonicalize=(b"relaxed", b"relaxed"),
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        whole = (sig + msg).replace(b"\r\n", b"\n")
        out.write(b"From s%d@bench.test Mon Jan  1 10:00:00 2024\n" % i)
        out.write(whole)
        if not whole.endswith(b"\n"):
            out.write(b"\n")
        out.write(b"\n")
EOF
fi

cat > "$W/dkimpy-verify.py" <<'EOF'
import mailbox, sys, dkim
rec = open(sys.argv[2], "rb").read().strip()
ok = bad = 0
for m in mailbox.mbox(sys.argv[1], create=False):
    data = m.as_bytes().replace(b"\n", b"\r\n")
    if dkim.verify(data, dnsfunc=lambda name, timeout=5: rec):
        ok += 1
    else:
        bad += 1
print(ok, bad)
EOF

# Both must find every signature valid before they are timed.
read -r ok bad < <("$PYTHON" "$W/dkimpy-verify.py" "$W/msgs.mbox" "$W/key.txt")
[ "$ok" = "$N" ] && [ "$bad" = 0 ] || { echo "dkimpy: $ok valid, $bad not, of $N" >&2; exit 1; }
pass=$("$MAIL_TRACE" --verify --json --dns-replay "$W/keys.dns" "$W/msgs.mbox" \
  | "$PYTHON" -c 'import json,sys; print(sum(1 for l in sys.stdin if json.loads(l)["verify"]["dkim"][0]["result"] == "pass"))')
[ "$pass" = "$N" ] || { echo "mail-trace: $pass of $N pass" >&2; exit 1; }

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
R="$BENCH_DIR/results/verify-$STAMP"
mkdir -p "$R"
hyperfine --warmup 1 --runs "$RUNS" --export-json "$R/hyperfine.json" \
  -n mail-trace "$MAIL_TRACE --verify --json --dns-replay $W/keys.dns $W/msgs.mbox > /dev/null" \
  -n dkimpy "$PYTHON $W/dkimpy-verify.py $W/msgs.mbox $W/key.txt > /dev/null" >&2
"$PYTHON" - "$R/hyperfine.json" "$N" <<'EOF'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
n = int(sys.argv[2])
print("| verifier | median s | messages/s |")
print("|---|---|---|")
for r in res:
    print("| %s | %.2f | %.0f |" % (r["command"], r["median"], n / r["median"]))
EOF

# 5. dkimverify, one process per message, key from DNS (see the header).
DKIMVERIFY_N=${DKIMVERIFY_N:-500}
if [ "$DKIMVERIFY_N" = 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v dnsmasq >/dev/null || ! command -v unshare >/dev/null \
   || ! command -v dkimverify >/dev/null || ss -lun | grep -q '127.0.0.1:53 '; then
  echo "bench/verify.sh: dkimverify step skipped (needs root, dnsmasq, unshare, dkimverify and a free 127.0.0.1:53)" >&2
  exit 0
fi
ONE="$W/one-$DKIMVERIFY_N"
if [ ! -d "$ONE" ]; then
  mkdir -p "$ONE"
  "$PYTHON" - "$W/msgs.mbox" "$ONE" "$DKIMVERIFY_N" <<'PY'
import mailbox, sys
for i, m in enumerate(mailbox.mbox(sys.argv[1], create=False)):
    if i >= int(sys.argv[3]):
        break
    open("%s/%05d.eml" % (sys.argv[2], i), "wb").write(m.as_bytes().replace(b"\n", b"\r\n"))
PY
fi
REC=$(cat "$W/key.txt")
cat > "$W/dnsmasq.conf" <<CONF
port=53
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
txt-record=sel._domainkey.bench.test,"${REC:0:200}","${REC:200}"
CONF
echo "nameserver 127.0.0.1" > "$W/resolv.conf"
cat > "$W/dkimverify-all.sh" <<SH
mount --bind $W/resolv.conf /etc/resolv.conf || exit 1
for f in $ONE/*.eml; do dkimverify < "\$f" > /dev/null || { echo "dkimverify failed on \$f" >&2; exit 1; }; done
SH
dnsmasq --keep-in-foreground --conf-file="$W/dnsmasq.conf" &
DNSMASQ=$!
trap 'kill $DNSMASQ 2>/dev/null' EXIT
sleep 1
# Every message must verify before it is timed.
unshare -m sh "$W/dkimverify-all.sh"
hyperfine --runs 1 --export-json "$R/dkimverify.json" \
  -n "dkimverify, one process per message" "unshare -m sh $W/dkimverify-all.sh" >&2
"$PYTHON" - "$R/dkimverify.json" "$DKIMVERIFY_N" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
n = int(sys.argv[2])
print("| %s (first %d messages) | %.2f | %.0f |" % (r["command"], n, r["median"], n / r["median"]))
PY
