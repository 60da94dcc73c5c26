#!/usr/bin/env python3
"""How long the disk takes to make one 8 KiB write durable, the way PostgreSQL's WAL flush
does (pwrite + fdatasync, in a loop, one at a time), and how often it stalls.

A durable ack can never be faster than this; when the disk stalls for 50 ms, every commit
in flight waits 50 ms, whatever the server does. `share_waiting_over_10ms_pct` is the share
of moments at which a flush under way still has more than 10 ms to go: the share of ops
that would wait over 10 ms for the disk alone. Above 1%, a p99 of 10 ms is out of reach. Run it on an idle machine, on the
filesystem that holds PostgreSQL's data, to see the floor under the p99 of the load runs.

    scripts/fsync-probe.py [--dir DIR] [--seconds 10] [--json]

Prints a summary and, with --json, one line of JSON at the end.
"""

import argparse
import json
import os
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="a directory on the filesystem to probe (default: the temp dir)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()

    fd, path = tempfile.mkstemp(prefix="spacesync-fsync-probe.", dir=args.dir)
    block = b"\0" * 8192
    slots = 1024  # an 8 MiB file, written over and over: no allocation, no metadata change
    latencies = []
    try:
        # Allocate the file first, so the probe measures data flushes, not block allocation.
        for slot in range(slots):
            os.pwrite(fd, block, slot * len(block))
        os.fsync(fd)
        started = time.monotonic()
        next_report = started + 1.0
        slot = 0
        while (now := time.monotonic()) - started < args.seconds:
            before = time.perf_counter()
            os.pwrite(fd, block, slot * len(block))
            os.fdatasync(fd)
            latencies.append((time.perf_counter() - before) * 1e3)
            slot = (slot + 1) % slots
            if now >= next_report:
                print(f"[{now - started:4.0f}s] {len(latencies)} flushes, "
                      f"worst so far {max(latencies):.1f} ms", file=sys.stderr)
                next_report += 1.0
    finally:
        os.close(fd)
        os.unlink(path)

    latencies.sort()
    count = len(latencies)
    minutes = args.seconds / 60.0

    def quantile(q: float) -> float:
        return round(latencies[min(count - 1, int(count * q))], 3)

    result = {
        "fsync_count": count,
        "fsync_p50_ms": quantile(0.5),
        "fsync_p99_ms": quantile(0.99),
        "fsync_p999_ms": quantile(0.999),
        "fsync_max_ms": round(latencies[-1], 1),
        "stalls_over_10ms_per_min": round(sum(1 for x in latencies if x > 10) / minutes, 1),
        "stalls_over_30ms_per_min": round(sum(1 for x in latencies if x > 30) / minutes, 1),
        # An op that arrives at a random moment waits more than 10 ms for the flush under way
        # when it arrives in a stall with more than 10 ms of it left. Above 1%, a p99 of 10 ms
        # for durable acks is out of reach on this disk, whatever the server does.
        "share_waiting_over_10ms_pct": round(
            sum(max(0.0, x - 10.0) for x in latencies) / (args.seconds * 1e3) * 100, 2),
        "seconds": args.seconds,
        "dir": args.dir,
    }
    print(f"{count} flushes of 8 KiB in {args.seconds:.0f} s: p50 {result['fsync_p50_ms']} ms, "
          f"p99 {result['fsync_p99_ms']} ms, p99.9 {result['fsync_p999_ms']} ms, "
          f"max {result['fsync_max_ms']} ms; stalls over 10 ms: "
          f"{result['stalls_over_10ms_per_min']}/min, over 30 ms: "
          f"{result['stalls_over_30ms_per_min']}/min; an op arriving at a random moment would wait "
          f"over 10 ms for the flush in {result['share_waiting_over_10ms_pct']}% of cases",
          file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
