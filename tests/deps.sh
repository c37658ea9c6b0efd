#!/bin/sh
# tests/deps.sh: make sure the Debian packages the test suite needs are there.
# As root, install what is missing (without starting any system service:
# the tests run their own Dovecot and Courier on free loopback ports).
# Otherwise say in one line what to install, and fail.
#
# Courier IMAP/POP3 (the second server family beside Dovecot) conflicts with
# Dovecot's packages, so it is never installed: courier-base, courier-imap
# and courier-pop are fetched with `apt-get download` and unpacked with
# `dpkg -x` into $POSTLINE_COURIER_DIR/root (default
# /var/tmp/postline-courier/root), once. Their libraries and authdaemond
# (courier-authlib, courier-authlib-userdb, ...) do not conflict and are
# installed as usual. The harness (tests/cli/courier.rs) runs each Courier
# in a mount namespace of its own, with a private /etc/courier and
# /run/courier/authdaemon bound over the compiled-in paths; the one global
# change is that those two (empty) directories exist as mount points.
set -eu
PKGS="dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix swaks dnsmasq-base mandoc openssl libssl-dev pkg-config python3 strace util-linux"
PKGS="$PKGS python3-dkim"
PKGS="$PKGS dovecot-sieve"
PKGS="$PKGS courier-authlib courier-authlib-userdb libcourier-unicode4 libidn12 libgamin0"
COURIER_DIR=${POSTLINE_COURIER_DIR:-/var/tmp/postline-courier}
COURIER_PKGS="courier-base courier-imap courier-pop"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
courier=1
for f in usr/sbin/couriertcpd usr/bin/couriertls usr/bin/imapd usr/lib/courier/courier/imaplogin \
         usr/lib/courier/courier/courierpop3login usr/lib/courier/courier/courierpop3d \
         etc/courier/imapd etc/courier/pop3d; do
  [ -e "$COURIER_DIR/root/$f" ] || courier=0
done

# Mount points for the harness's private Courier config and socket
# directories (/run is emptied at boot: made on every run).
mountpoints() {
  mkdir -p /etc/courier /run/courier/authdaemon
}

if [ -z "$missing" ] && [ "$courier" = 1 ]; then
  [ "$(id -u)" = 0 ] && mountpoints
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  [ -n "$missing" ] && echo "tests need:$missing (run: sudo apt-get install$missing)" >&2
  [ "$courier" = 0 ] && echo "tests need Courier ($COURIER_PKGS) unpacked in $COURIER_DIR/root (run: sudo sh tests/deps.sh)" >&2
  exit 1
fi
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
if [ -n "$missing" ]; then
  echo "tests/deps.sh: installing:$missing"
  i=0
  until apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing; do
    i=$((i + 1)); [ "$i" -ge 10 ] && { echo "tests/deps.sh: apt-get failed" >&2; exit 1; }
    echo "tests/deps.sh: apt busy or failed, retrying in 10 s" >&2; sleep 10
  done
fi
if [ "$courier" = 0 ]; then
  echo "tests/deps.sh: unpacking $COURIER_PKGS into $COURIER_DIR/root"
  mkdir -p "$COURIER_DIR"
  rm -rf "$COURIER_DIR/debs" "$COURIER_DIR/root.new"
  mkdir "$COURIER_DIR/debs" "$COURIER_DIR/root.new"
  i=0
  # The package lists may be missing or stale: update, then try again.
  until (cd "$COURIER_DIR/debs" && apt-get download -q -o APT::Sandbox::User=root $COURIER_PKGS); do
    i=$((i + 1)); [ "$i" -ge 10 ] && { echo "tests/deps.sh: apt-get download failed" >&2; exit 1; }
    echo "tests/deps.sh: apt-get download failed, updating the package lists and retrying" >&2
    apt-get update -q >/dev/null || sleep 10
  done
  for d in "$COURIER_DIR"/debs/*.deb; do dpkg -x "$d" "$COURIER_DIR/root.new"; done
  rm -rf "$COURIER_DIR/root"
  mv "$COURIER_DIR/root.new" "$COURIER_DIR/root"
  rm -rf "$COURIER_DIR/debs"
fi
mountpoints
