"""Turn ValiMail's ARC validation suite (YAML, tests/fixtures/mail-trace/arc/)
into cases for tests/cli/trace_verify.rs: a JSON list of
{id, message, cv, book, at}, where

- id is the test's name; a name given twice in one scenario (the suite
  repeats four in "Arc Seal Fields") is kept as NAME#2, so every case in
  the file runs, not only the last of two (which a plain YAML load keeps);
- cv is the expected chain validation status in lower case (none, pass,
  fail). Three draft-era cases give an empty cv (the chain already carried
  cv=fail, so the draft wanted no new verdict); RFC 8617 5.2 makes that
  "fail", which is what they are judged against;
- book is a mail-trace replay file holding the scenario's txt-records
  (strings cut at 255 bytes, as a TXT record must be), every other name
  NXDOMAIN;
- at is the newest t= in the message's ARC fields, the time the case is
  judged as of (--at), so nothing depends on today's date.

Usage: arc_suite.py FILE.yml > cases.json
"""
import json
import re
import sys

import yaml


class Loader(yaml.SafeLoader):
    pass


def mapping(loader, node):
    out = {}
    for k_node, v_node in node.value:
        key = loader.construct_object(k_node, deep=True)
        value = loader.construct_object(v_node, deep=True)
        name, n = key, 2
        while name in out:
            name = "%s#%d" % (key, n)
            n += 1
        out[name] = value
    return out


Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def book(records):
    lines = ["$DEFAULT NXDOMAIN"]
    for name, value in (records or {}).items():
        value = str(value)
        parts = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
        lines.append("%s. TXT %s" % (name.rstrip("."), " ".join(quote(p) for p in parts)))
    return "\n".join(lines) + "\n"


def main():
    cases = []
    with open(sys.argv[1], encoding="utf-8") as fh:
        for doc in yaml.load_all(fh, Loader=Loader):
            if not doc:
                continue
            b = book(doc.get("txt-records"))
            for tid, t in doc["tests"].items():
                cv = str(t.get("cv") or "").strip().lower() or "fail"
                msg = t.get("message") or ""
                times = [int(x) for x in re.findall(r"\bt=(\d+)", msg)]
                cases.append({
                    "id": tid,
                    "message": msg,
                    "cv": cv,
                    "book": b,
                    "at": max(times) if times else 0,
                })
    json.dump(cases, sys.stdout)


main()
