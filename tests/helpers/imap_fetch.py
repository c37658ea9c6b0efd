#!/usr/bin/env python3
"""Fetch every message of one IMAP folder: an independent reader for tests.

usage: imap_fetch.py HOST PORT USER PASSWORD [FOLDER]

Logs in with LOGIN over plain IMAP, EXAMINEs FOLDER (default INBOX, so
nothing is changed on the server) and writes each message's BODY[] exactly
as the server sent it (CRLF line endings) to stdout, in UID order, each as
"<length>\\n<bytes>". Any failure exits non-zero with a message on stderr.
"""
import imaplib
import sys


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    folder = sys.argv[5] if len(sys.argv) == 6 else "INBOX"
    out = sys.stdout.buffer
    imap = imaplib.IMAP4(host, port, timeout=60)
    try:
        typ, data = imap.login(user, password)
        if typ != "OK":
            sys.exit(f"LOGIN failed: {data!r}")
        typ, data = imap.select(folder, readonly=True)
        if typ != "OK":
            sys.exit(f"EXAMINE {folder} failed: {data!r}")
        typ, data = imap.uid("SEARCH", None, "ALL")
        if typ != "OK":
            sys.exit(f"UID SEARCH failed: {data!r}")
        uids = sorted(int(u) for u in data[0].split())
        for uid in uids:
            typ, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
            if typ != "OK":
                sys.exit(f"UID FETCH {uid} failed: {data!r}")
            bodies = [part[1] for part in data
                      if isinstance(part, tuple) and b"BODY[]" in part[0]]
            if len(bodies) != 1:
                sys.exit(f"UID FETCH {uid}: expected one BODY[] literal, got {data!r}")
            out.write(b"%d\n" % len(bodies[0]))
            out.write(bodies[0])
        out.flush()
    finally:
        try:
            imap.logout()
        except Exception:
            pass


if __name__ == "__main__":
    main()
