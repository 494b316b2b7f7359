#!/usr/bin/env python3
"""The code a request runs, from two callgrind profiles of the same binary.

Question: how much distinct machine code runs on every request, and where is it? Simulated
L1i misses depend on the order code runs in (they vary by up to ~20% between runs of one
binary); the code itself does not, so this is the stable figure for "less code per request".

Method: `instructions.sh` keeps, per row, a callgrind profile of N and of 2N requests taken
with `--dump-instr=yes` (costs per instruction address). An instruction counts as per-request
code when its execution count grows by at least 0.9 per request served between the two runs
(start-up, warm-up and shutdown cancel out; code run on only some requests is left out). Its
64-byte lines are the code's footprint, what an instruction cache has to hold for a request.

It also counts the calls into libc's `clock_gettime` per request (each a clock read, ~20 ns
of vDSO outside valgrind), from the profiles' call counts.

Usage: benches/footprint.py SMALL.out LARGE.out REQUESTS [TOP]
  REQUESTS is the difference in requests served between the two runs. Prints
  "<instructions> <lines> <clock reads>": how many distinct instructions, and 64-byte lines of
  code, run on every request, and clock reads per request; then, with TOP, the TOP functions
  by lines, to stderr.
"""

import collections
import re
import sys

NAMED = re.compile(r"\((\d+)\)(?: (.*))?")
CLOCK = re.compile(r"clock_gettime")


def load(path):
    """Execution count per instruction address, the function each address belongs to, and
    the calls into `clock_gettime` from outside it (its own inner calls are not reads)."""
    names = {}
    clock_reads = 0
    callee = ""
    counts = collections.Counter()
    owner = {}
    function = None
    positions = 1
    addr = 0
    skip_next = False
    with open(path, errors="replace") as f:
        for raw in f:
            first = raw[0]
            if first in "0+-*":
                fields = raw.split()
                a = fields[0]
                if a.startswith("0x"):
                    addr = int(a, 16)
                elif a[0] == "+":
                    addr += int(a[1:])
                elif a[0] == "-":
                    addr -= int(a[1:])
                if skip_next:
                    # The cost line of a call: inclusive cost of the callee, not this address's.
                    skip_next = False
                    continue
                if len(fields) > positions:
                    counts[addr] += int(fields[positions])
                    owner.setdefault(addr, function)
            elif raw.startswith("fn="):
                m = NAMED.match(raw[3:].strip())
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                function = names.get(m.group(1), "?")
            elif raw.startswith("cfn="):
                # A callee's name may be given first where it is called.
                m = NAMED.match(raw[4:].strip())
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                callee = names.get(m.group(1), "?")
            elif raw.startswith("calls="):
                skip_next = True
                if CLOCK.search(callee) and not CLOCK.search(function or ""):
                    clock_reads += int(raw[6:].split()[0])
            elif raw.startswith("positions:"):
                positions = len(raw.split()) - 1
                if "instr" not in raw:
                    sys.exit(f"{path}: no instruction addresses (callgrind --dump-instr=yes)")
    return counts, owner, clock_reads


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    small, _, small_reads = load(sys.argv[1])
    large, owner, large_reads = load(sys.argv[2])
    requests = float(sys.argv[3])
    if requests <= 0:
        sys.exit("REQUESTS must be positive")
    hot = [a for a, n in large.items() if (n - small.get(a, 0)) / requests >= 0.9]
    lines = {a >> 6 for a in hot}
    print(len(hot), len(lines), f"{(large_reads - small_reads) / requests:.1f}")
    if len(sys.argv) == 5:
        by_function = collections.defaultdict(set)
        for a in hot:
            by_function[owner[a]].add(a >> 6)
        ranked = sorted(by_function.items(), key=lambda kv: -len(kv[1]))
        for function, its_lines in ranked[: int(sys.argv[4])]:
            print(f"{len(its_lines):6d}  {function}", file=sys.stderr)


if __name__ == "__main__":
    main()
