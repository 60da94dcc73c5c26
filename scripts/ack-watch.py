#!/usr/bin/env python3
"""Where slow acks wait, moment by moment: scrapes a running server's /metrics every
`--interval` seconds and prints, for each interval with slow acks, how many acks, commit waits
and commits took over 8 ms and over 32 ms.

    scripts/ack-watch.py http://127.0.0.1:8080/metrics [--seconds 60] [--interval 0.25]

Read a line like this:

    34.03 s  acks 4258 (>8 ms 3448, >32 ms 2508)  commit waits 2972 (2068, 787)  commits 84 (12, 4)

- `commits` (`spacesync_commit_seconds`): the store's own time for one batch. Slow commits
  here mean PostgreSQL or its disk stalled.
- `commit waits` (`spacesync_commit_wait_seconds`): a space's batch handed to the committer
  until its answer, so queueing behind other commits included.
- `acks` (`spacesync_ack_seconds`): an op's arrival at its space to its ack. Acks slower than
  their commit waits waited in their space's mailbox for the batch before theirs.

A stall of a few commits shows as many slow acks in the same interval: every op that arrives
meanwhile waits for it. Intervals where no ack took over 8 ms are not printed; the summary at
the end counts them all.
"""

import argparse
import re
import sys
import time
import urllib.request

HISTOGRAMS = (
    ("acks", "ack_seconds"),
    ("commit waits", "commit_wait_seconds"),
    ("commits", "commit_seconds"),
)


def scrape(url):
    text = urllib.request.urlopen(url, timeout=2).read().decode()
    out = {}
    for label, name in HISTOGRAMS:
        buckets = {}
        pattern = r'^spacesync_%s_bucket\{le="([^"]+)"\} (\d+)' % name
        for match in re.finditer(pattern, text, re.M):
            bound = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
            buckets[bound] = int(match.group(2))
        out[label] = buckets
    return out


def over(now, before, threshold):
    """Observations in the interval (total, over `threshold` seconds) from cumulative buckets."""
    total = now.get(float("inf"), 0) - before.get(float("inf"), 0)
    bounds = [bound for bound in now if bound >= threshold]
    if not bounds:
        return total, 0
    bound = min(bounds)
    within = now[bound] - before.get(bound, 0)
    return total, total - within


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args()
    try:
        before = scrape(args.url)
    except OSError as error:
        sys.exit(f"cannot read {args.url}: {error}")
    start = time.monotonic()
    intervals = slow_intervals = 0
    totals = {label: [0, 0, 0] for label, _ in HISTOGRAMS}
    while time.monotonic() - start < args.seconds:
        time.sleep(args.interval)
        try:
            now = scrape(args.url)
        except OSError:
            break  # the server stopped
        intervals += 1
        parts = []
        for label, _ in HISTOGRAMS:
            total, over8 = over(now[label], before[label], 0.008)
            _, over32 = over(now[label], before[label], 0.032)
            for index, value in enumerate((total, over8, over32)):
                totals[label][index] += value
            parts.append(f"{label} {total} (>8 ms {over8}, >32 ms {over32})")
        if over(now["acks"], before["acks"], 0.008)[1] > 0:
            slow_intervals += 1
            print(f"{time.monotonic() - start:7.2f} s  " + "  ".join(parts), flush=True)
        before = now
    print(f"{intervals} intervals of {args.interval} s, {slow_intervals} with acks over 8 ms")
    for label, (total, over8, over32) in totals.items():
        print(f"  {label:>12}: {total} in all, {over8} over 8 ms, {over32} over 32 ms")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
