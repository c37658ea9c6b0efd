#!/usr/bin/env python3
"""Deterministic, realistic test messages for the delivery benchmarks.

    genmsg.py --count N [--seed S] --dir DIR      N files DIR/000001.eml ...
    genmsg.py --count N [--seed S] --mbox FILE    one mboxrd file of N messages

Message i depends only on (seed, i), so the first N messages of a larger set
(files or mbox) are byte for byte the same as a set of N. Each message has
3-5 Received lines, a Message-ID, Date, From, To, Subject and a MIME header,
LF line endings and a 2-8 KB plain-text body; about one message in three has
body lines that start with "From " and ">From " (the lines mbox writers must
quote). No CR, no trailing spaces, every line ends in LF.
"""

import argparse
import os
import random
import sys
from datetime import datetime, timedelta, timezone

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or "
    "his from at which but have an they you were her she there been one all "
    "we their has would when if so no will more can out up said about other "
    "into than its time only could new them man some these then two first may "
    "any like now my such make over our even most me state after also made "
    "many did must before back see through way where get much go well your "
    "mailbox delivery server queue message header relay spool folder rename "
    "fsync journal commit rollback latency throughput release patch review "
    "meeting budget invoice schedule report draft attached thanks regards"
).split()
FIRST = "alice bob carol dave erin frank grace heidi ivan judy mallory oscar peggy trent victor walter".split()
DOMAINS = "example.com example.net example.org mail.example.com lists.example.org corp.example".split()
RELAYS = "mx1 mx2 smtp-in relay out-7 mta3 edge gw".split()
TOPICS = (
    "Quarterly report", "Re: build failure on main", "Invoice 4471", "Meeting notes",
    "Re: Re: holiday schedule", "[announce] release 2.4.1", "Your order has shipped",
    "Fwd: draft for review", "Question about the mbox format", "Re: patch v3 1/4",
)
EPOCH = datetime(2026, 11, 1, 8, 0, 0, tzinfo=timezone.utc)


def sentence(r, lo=6, hi=14):
    ws = [r.choice(WORDS) for _ in range(r.randint(lo, hi))]
    return " ".join(ws).capitalize() + r.choice(".!?.")


def wrap(text, width=72):
    out, line = [], ""
    for w in text.split():
        if line and len(line) + 1 + len(w) > width:
            out.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        out.append(line)
    return out


def address(r):
    return f"{r.choice(FIRST)}.{r.choice(FIRST)}@{r.choice(DOMAINS)}"


def rfc2822(dt):
    return dt.strftime("%a, %d %b %Y %H:%M:%S +0000")


def message(seed, i):
    """Message number i (1-based) of the set for seed: (envelope sender, bytes)."""
    r = random.Random(seed * 1_000_003 + i)
    sender = address(r)
    rcpt = address(r)
    date = EPOCH + timedelta(seconds=i * 37 + r.randint(0, 30))
    h = []
    hops = r.randint(3, 5)
    t = date + timedelta(seconds=hops * 2)
    for hop in range(hops):
        host = f"{r.choice(RELAYS)}.{r.choice(DOMAINS)}"
        frm = f"{r.choice(RELAYS)}.{r.choice(DOMAINS)}"
        ip = ".".join(str(r.randint(1, 254)) for _ in range(4))
        qid = "".join(r.choice("0123456789ABCDEF") for _ in range(10))
        h.append(f"Received: from {frm} ({frm} [{ip}])\n"
                 f"\tby {host} (Postfix) with ESMTPS id {qid}\n"
                 f"\tfor <{rcpt}>; {rfc2822(t)}")
        t -= timedelta(seconds=2)
    h.append(f"Message-ID: <{seed}.{i}.{r.getrandbits(48):012x}@{sender.split('@')[1]}>")
    h.append(f"Date: {rfc2822(date)}")
    h.append(f"From: {sender.split('@')[0].replace('.', ' ').title()} <{sender}>")
    h.append(f"To: <{rcpt}>")
    h.append(f"Subject: {r.choice(TOPICS)} #{i}")
    h.append("MIME-Version: 1.0")
    h.append("Content-Type: text/plain; charset=utf-8")
    h.append("Content-Transfer-Encoding: 8bit")
    target = r.randint(2048, 8192)
    quoting = r.random() < 0.35
    body = []
    size = 0
    while size < target:
        k = r.random()
        if quoting and k < 0.06:
            line = f"From {r.choice(WORDS)} {sentence(r, 3, 8)}"  # needs quoting in an mbox
            para = [line]
        elif quoting and k < 0.10:
            para = [f">From the earlier mail: {sentence(r, 3, 8)}"]
        elif k < 0.20:
            para = ["> " + x for x in wrap(" ".join(sentence(r) for _ in range(r.randint(1, 3))), 70)]
        else:
            para = wrap(" ".join(sentence(r) for _ in range(r.randint(2, 6))))
        body.extend(para)
        body.append("")
        size += sum(len(x) + 1 for x in para) + 1
    body.extend(["-- ", f"{sender.split('@')[0].split('.')[0].title()}"])
    text = "\n".join(h) + "\n\n" + "\n".join(body) + "\n"
    return sender, text.encode("utf-8")


def from_line(sender, i):
    dt = EPOCH + timedelta(seconds=i * 37)
    return f"From {sender} {dt.strftime('%a %b %d %H:%M:%S %Y')}\n".encode()


def mboxrd_quote(data):
    out = []
    for line in data.split(b"\n"):
        if line.lstrip(b">").startswith(b"From "):
            line = b">" + line
        out.append(line)
    return b"\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--dir")
    g.add_argument("--mbox")
    a = ap.parse_args()
    if a.dir:
        os.makedirs(a.dir, exist_ok=True)
        for i in range(1, a.count + 1):
            _, data = message(a.seed, i)
            with open(os.path.join(a.dir, f"{i:06d}.eml"), "wb") as f:
                f.write(data)
    else:
        tmp = a.mbox + ".part"
        with open(tmp, "wb") as f:
            for i in range(1, a.count + 1):
                sender, data = message(a.seed, i)
                f.write(from_line(sender, i))
                f.write(mboxrd_quote(data))
                f.write(b"\n")  # the empty line before the next From_
        os.replace(tmp, a.mbox)
    return 0


if __name__ == "__main__":
    sys.exit(main())
