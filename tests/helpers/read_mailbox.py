#!/usr/bin/env python3
"""Read a Maildir or an mbox with Python's own `mailbox` module: an
independent reader for tests.

usage: read_mailbox.py [--folder NAME] [--format mboxrd|mboxo] PATH

PATH is a Maildir when it is a directory, an mbox file otherwise. Writes
each message's raw bytes to stdout as "<length>\\n<bytes>":

* Maildir: every message in new/ and cur/ (tmp/ is ignored, as the spec
  says), sorted by file name. --folder reads the Maildir++ subfolder
  (".NAME") instead.
* mbox: every message in file order, without its "From " line. Python's
  reader already drops the blank line that separates messages; it does not
  undo the quoting of body lines, so this script does: mboxrd (default)
  turns ">>From " into ">From " and ">From " into "From " (any number of
  '>' loses one); mboxo only turns ">From " into "From ".
"""
import mailbox
import os
import re
import sys

MBOXRD = re.compile(rb"^>(>*From )", re.MULTILINE)
MBOXO = re.compile(rb"^>(From )", re.MULTILINE)


def main():
    args = sys.argv[1:]
    folder = None
    fmt = "mboxrd"
    while len(args) > 1 and args[0].startswith("--"):
        if args[0] == "--folder":
            folder = args[1]
        elif args[0] == "--format":
            fmt = args[1]
        else:
            sys.exit(__doc__)
        args = args[2:]
    if len(args) != 1 or fmt not in ("mboxrd", "mboxo"):
        sys.exit(__doc__)
    path = args[0]
    out = sys.stdout.buffer
    if os.path.isdir(path):
        md = mailbox.Maildir(path, factory=None, create=False)
        if folder is not None:
            md = md.get_folder(folder)
        # _lookup gives "new/NAME" or "cur/NAME:2,FLAGS"; sort by NAME.
        keys = sorted(md.keys(), key=lambda k: os.path.basename(md._lookup(k)))
        msgs = [md.get_bytes(k) for k in keys]
    else:
        if folder is not None:
            sys.exit("--folder applies to Maildirs only")
        if not os.path.isfile(path):
            sys.exit(f"{path}: no such mailbox")
        mb = mailbox.mbox(path, factory=None, create=False)
        pattern = MBOXRD if fmt == "mboxrd" else MBOXO
        msgs = [pattern.sub(rb"\1", mb.get_bytes(k)) for k in mb.keys()]
        mb.close()
    for m in msgs:
        out.write(b"%d\n" % len(m))
        out.write(m)
    out.flush()


if __name__ == "__main__":
    main()
