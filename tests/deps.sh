#!/bin/sh
# tests/deps.sh: make sure the Debian packages the test suite needs are there.
# As root, install what is missing (without starting any system service:
# the tests run their own Dovecot on free loopback ports). Otherwise say in
# one line what to install, and fail.
set -eu
PKGS="dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix dnsmasq-base mandoc openssl libssl-dev pkg-config python3 strace util-linux"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "tests need:$missing (run: sudo apt-get install$missing)" >&2
  exit 1
fi
echo "tests/deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Postfix: "No configuration", so no system instance is set up; the tests
# run their own with a config in a temp dir.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# Keep the packages' own services (a system Dovecot on 143/110) from starting.
policy=/usr/sbin/policy-rc.d
added=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; added=1
fi
trap '[ "$added" = 1 ] && rm -f "$policy"' EXIT
i=0
until apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing; do
  i=$((i + 1)); [ "$i" -ge 10 ] && { echo "tests/deps.sh: apt-get failed" >&2; exit 1; }
  echo "tests/deps.sh: apt busy or failed, retrying in 10 s" >&2; sleep 10
done
