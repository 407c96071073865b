#!/usr/bin/env python3
"""Heap allocations per record of decode + transform, by the place that makes them.

    bench/alloc-sites.py [ROUTES.toml]     default: bench/routes.toml

Runs the core's profile example (crates/core/examples/profile.rs: the MSK event parsed
from its bytes, then each of its 6,000 generated records decoded and transformed) under
valgrind's DHAT twice, over one event and over two, and prints the difference per record:
what one more event's records allocate, without the process's start, the routes and the
generated event. Each line: blocks per record, their mean size in bytes, and the innermost
two of the core's own functions on the allocation's stack that were not inlined (the
standard library's generic code, such as `Vec::with_capacity` of a core type, is left out;
a core function inlined into another is counted at its caller's line, so two allocations
of one inlined function share that line). Needs valgrind; builds the example with line
tables so frames name their lines.
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = 6000  # records per event in the profile example
TARGET = os.path.join(ROOT, "target", "alloc-sites")


def sites(routes, rounds):
    """Blocks and bytes per allocation site (its core frames) over `rounds` events."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        run = subprocess.run(["valgrind", "--tool=dhat", f"--dhat-out-file={out.name}",
                              os.path.join(TARGET, "release", "examples", "profile"), str(rounds), routes],
                             capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"alloc-sites: valgrind failed:\n{run.stderr[-2000:]}")
        with open(out.name) as f:
            data = json.load(f)
    frames, found = data["ftbl"], {}
    for point in data["pps"]:
        # The core's own functions (a frame is "0xADDR: function (file:line)"), not the
        # standard library's generic code instantiated with the core's types.
        names = (frames[i].split(": ", 1)[-1] for i in point["fs"])
        ours = [name for name in names if name.startswith(("cdc_relay_core::", "<cdc_relay_core::"))]
        site = " | ".join(ours[:2]) or "(outside the core)"
        blocks, total = found.get(site, (0, 0))
        found[site] = (blocks + point["tbk"], total + point["tb"])
    return found


def main():
    routes = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "bench", "routes.toml"))
    env = {**os.environ, "CARGO_TARGET_DIR": TARGET, "CARGO_PROFILE_RELEASE_DEBUG": "line-tables-only",
           "CARGO_PROFILE_RELEASE_STRIP": "none"}
    subprocess.run(["cargo", "build", "-q", "--release", "--locked", "-p", "cdc-relay-core", "--example", "profile"],
                   cwd=ROOT, env=env, check=True)
    one, two = sites(routes, 1), sites(routes, 2)
    rows = []
    for site, (blocks, total) in two.items():
        base_blocks, base_total = one.get(site, (0, 0))
        blocks, total = blocks - base_blocks, total - base_total
        if blocks != 0:
            rows.append((blocks / RECORDS, total / blocks, site))
    # A site the one-event run has and the two-event run lacks allocated less, not nothing.
    for site, (blocks, total) in one.items():
        if site not in two:
            rows.append((-blocks / RECORDS, total / blocks, site))
    rows.sort(key=lambda row: -row[0])
    print(f"# bench/alloc-sites.py {os.path.relpath(routes, ROOT)}: heap blocks per record "
          f"(two events less one, / {RECORDS})")
    print(f"{'per record':>10} {'mean bytes':>10}  site")
    for per_record, mean, site in rows:
        if abs(per_record) >= 0.01:
            print(f"{per_record:10.2f} {mean:10.0f}  {site[:160]}")
    print(f"{sum(row[0] for row in rows):10.2f} {'':>10}  in all (a site that allocated less counts less)")


if __name__ == "__main__":
    main()
