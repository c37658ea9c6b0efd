#!/usr/bin/env python3
"""The fastest plain client read-out of a Dovecot mailbox: the protocol floor
a fetcher can approach over loopback. Nothing is stored or deleted.

    readout.py imap|pop3 HOST PORT USER PASSWORD EXPECTED

imap: LOGIN and SELECT INBOX in one write, then one
      "UID FETCH 1:* BODY.PEEK[]" read to the end.
pop3: USER, PASS and STAT, then every RETR in one write, read to the end.
Exits 0 when exactly EXPECTED messages came back, 1 otherwise (so a
benchmark run that read the wrong mailbox shows as failed).
"""

import re
import socket
import sys


def imap(host, port, user, pw):
    s = socket.create_connection((host, port))
    f = s.makefile("rb", buffering=1 << 20)
    f.readline()
    s.sendall(b'a LOGIN "%s" "%s"\r\na SELECT INBOX\r\n' % (user.encode(), pw.encode()))
    done = 0
    while done < 2:
        line = f.readline()
        if not line:
            raise SystemExit("imap: connection closed")
        if line.startswith(b"a "):
            if not line.startswith(b"a OK"):
                raise SystemExit("imap: " + line.decode(errors="replace"))
            done += 1
    s.sendall(b"b UID FETCH 1:* BODY.PEEK[]\r\n")
    n = nbytes = 0
    lit = re.compile(rb"\{(\d+)\}\r\n$")
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("imap: connection closed")
        if line.startswith(b"b "):
            if not line.startswith(b"b OK"):
                raise SystemExit("imap: " + line.decode(errors="replace"))
            break
        m = lit.search(line)
        if m:
            nbytes += len(f.read(int(m.group(1))))
            n += 1
    s.sendall(b"c LOGOUT\r\n")
    s.close()
    return n, nbytes


def pop3(host, port, user, pw):
    s = socket.create_connection((host, port))
    f = s.makefile("rb", buffering=1 << 20)
    f.readline()
    s.sendall(b"USER %s\r\nPASS %s\r\nSTAT\r\n" % (user.encode(), pw.encode()))
    for _ in range(2):
        line = f.readline()
        if not line.startswith(b"+OK"):
            raise SystemExit("pop3: " + line.decode(errors="replace"))
    count = int(f.readline().split()[1])
    s.sendall(b"".join(b"RETR %d\r\n" % i for i in range(1, count + 1)))
    n = nbytes = 0
    for _ in range(count):
        if not f.readline().startswith(b"+OK"):
            raise SystemExit("pop3: RETR failed")
        while True:
            line = f.readline()
            if line == b".\r\n" or not line:
                break
            nbytes += len(line)
        n += 1
    s.sendall(b"QUIT\r\n")
    s.close()
    return n, nbytes


if __name__ == "__main__":
    if len(sys.argv) != 7 or sys.argv[1] not in ("imap", "pop3"):
        raise SystemExit(__doc__)
    proto, host, port, user, pw, expected = sys.argv[1:7]
    n, b = (imap if proto == "imap" else pop3)(host, int(port), user, pw)
    print("%d messages, %d bytes" % (n, b))
    sys.exit(0 if n == int(expected) else 1)
