"""A DKIM-signing Postfix content filter for tests/cli/trace_verify.rs.

Postfix hands each message to it through a `pipe` service (the classic
"simple content filter"): the message on stdin, the envelope as arguments.
It signs with dkimpy (Debian's python3-dkim) and re-injects over SMTP into
a Postfix listener that has no content filter, so the message goes on to
the harness's Dovecot signed by Postfix's own path.

Usage: dkim_filter.py KEY.pem SELECTOR DOMAIN PORT SENDER RECIPIENT...
Exit 75 (EX_TEMPFAIL) on any failure, so Postfix keeps the message.
"""
import smtplib
import sys

import dkim


def main():
    key_path, selector, domain, port, sender = sys.argv[1:6]
    recipients = sys.argv[6:]
    msg = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with open(key_path, "rb") as fh:
        key = fh.read()
    sig = dkim.sign(
        msg,
        selector.encode(),
        domain.encode(),
        key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    with smtplib.SMTP("127.0.0.1", int(port), local_hostname="signer." + domain, timeout=30) as s:
        s.sendmail(sender, recipients, sig + msg)


try:
    main()
except Exception as e:  # any failure: tell Postfix to try again later
    sys.stderr.write("dkim_filter: %s\n" % e)
    sys.exit(75)
