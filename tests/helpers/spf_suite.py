"""Turn the openspf.org RFC 7208 test suite (YAML) into cases for
tests/cli/trace_verify.rs: a JSON list of {id, helo, host, mailfrom,
results, book}, where book is a mail-trace replay file (NAME TYPE DATA)
holding the scenario's zone the way pyspf's test driver serves it:

- SPF records are served as TXT when the name has no TXT of its own
  ("TXT: NONE" means: no TXT, and none generated);
- a TIMEOUT item makes every type without records SERVFAIL; a TIMEOUT
  value, that type;
- names not in the zone do not exist ($DEFAULT NXDOMAIN).

Usage: spf_suite.py FILE.yml > cases.json
"""
import json
import sys

import yaml

TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME")


def quote(s):
    out = []
    for b in s.encode("utf-8"):
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append("\\%03d" % b)
    return '"' + "".join(out) + '"'


def name(n):
    """A name in zone-file form: spaces, backslashes and bytes outside
    printable ASCII as \\DDD, with a final dot."""
    out = []
    for b in n.rstrip(".").encode("utf-8"):
        if b <= 0x20 or b >= 0x7F or b in (0x5C, 0x22, 0x3B):
            out.append("\\%03d" % b)
        else:
            out.append(chr(b))
    return "".join(out) + "."


def book(zone):
    lines = ["$DEFAULT NXDOMAIN"]
    for owner, items in (zone or {}).items():
        n = name(owner)
        recs = {}
        timeout = False
        txt_none = False
        spf = []
        for item in items:
            if item == "TIMEOUT":
                timeout = True
                continue
            for t, v in item.items():
                if t == "SPF":
                    spf.append(v)
                    continue
                if t == "TXT" and v == "NONE":
                    txt_none = True
                    continue
                recs.setdefault(t, []).append(v)
        if spf and "TXT" not in recs and not txt_none:
            recs["TXT"] = spf
        for t, vs in recs.items():
            for v in vs:
                if v == "TIMEOUT":
                    lines.append("%s %s SERVFAIL" % (n, t))
                elif t == "TXT":
                    parts = v if isinstance(v, list) else [v]
                    lines.append("%s TXT %s" % (n, " ".join(quote(p) for p in parts)))
                elif t == "MX":
                    lines.append("%s MX %d %s" % (n, v[0], name(v[1]) if v[1].strip(".") else "."))
                elif t in ("PTR", "CNAME"):
                    lines.append("%s %s %s" % (n, t, name(v)))
                else:
                    lines.append("%s %s %s" % (n, t, v))
        if timeout:
            for t in TYPES:
                if t not in recs:
                    lines.append("%s %s SERVFAIL" % (n, t))
        elif txt_none and "TXT" not in recs:
            lines.append("%s TXT NODATA" % n)
    return "\n".join(lines) + "\n"


def main():
    cases = []
    with open(sys.argv[1], encoding="latin-1") as fh:
        for doc in yaml.safe_load_all(fh):
            if not doc:
                continue
            b = book(doc.get("zonedata"))
            for tid, t in doc["tests"].items():
                r = t["result"]
                cases.append({
                    "id": tid,
                    "helo": t.get("helo", ""),
                    "host": t["host"],
                    "mailfrom": t.get("mailfrom", ""),
                    "results": r if isinstance(r, list) else [r],
                    "book": b,
                })
    json.dump(cases, sys.stdout)


main()
