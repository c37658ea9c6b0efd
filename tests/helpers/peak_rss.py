#!/usr/bin/env python3
"""Run a command and write its peak resident set size (KiB) to a file.

Usage: peak_rss.py OUTFILE COMMAND ARGS...
The command inherits stdin/stdout/stderr; this script exits with its code
(128+N for a signal). ru_maxrss of RUSAGE_CHILDREN is the command's own,
since it is this process's only child.
"""
import resource
import subprocess
import sys

out = sys.argv[1]
p = subprocess.run(sys.argv[2:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(out, "w") as f:
    f.write(f"{peak}\n")
sys.exit(p.returncode if p.returncode >= 0 else 128 - p.returncode)
