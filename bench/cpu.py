#!/usr/bin/env python3
"""Prints the CPU time (user + system, seconds) used so far by the given processes and
their descendants: `cpu.py PID...`. bench/run.sh reads it before and after each load run,
which gives a proxy's CPU cost per request regardless of what else the machine does."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from longpoll import children_of  # noqa: E402

tick = os.sysconf("SC_CLK_TCK")
total = 0
for pid in children_of([int(p) for p in sys.argv[1:]]):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime, stime are fields 14 and 15 of stat; after the comm they are 12th and 13th.
        total += int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        pass
print(f"{total / tick:.2f}")
