#!/usr/bin/env python3
"""Medians per tag from scripts/bench-load.sh results, as a Markdown table.

    python3 scripts/summarize.py docs/bench/results.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict

rows = defaultdict(list)
for line in open(sys.argv[1]):
    row = json.loads(line)
    rows[row["tag"]].append(row["result"])
print("| run | n | acked ops/s | p50 ms | p99 ms | server p50 ms | server p99 ms | rejected | lost | duplicated | diverged | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for tag, results in rows.items():
    if tag == "baseline":
        print(f"| baseline (pgbench, 100-row batches) | 1 | {results[0]['baseline_rows_per_s']:,} rows/s | | | | | | | | | |")
        continue
    if tag == "fsync":
        disk = results[0]
        print(f"| disk: 8 KiB write + fdatasync, {disk['seconds']:.0f} s, idle (scripts/fsync-probe.py) | "
              f"{disk['fsync_count']:,} | | {disk['fsync_p50_ms']:.2f} | {disk['fsync_p99_ms']:.2f} "
              f"(max {disk['fsync_max_ms']:.1f}; {disk['stalls_over_10ms_per_min']:.0f}/min over 10 ms; "
              f"{disk['share_waiting_over_10ms_pct']:.2f}% of moments wait over 10 ms) | | | | | | | |")
        continue
    med = lambda key: statistics.median(r[key] for r in results)
    total = lambda key: sum(r[key] for r in results)
    # The server's own arrival-to-ack latency (absent in results from before it was reported).
    def server(key):
        values = [r[key] for r in results if r.get(key) is not None]
        return f"{statistics.median(values):.2f}" if values else "–"
    print(f"| {tag} | {len(results)} | {med('acked_ops_per_s'):,.0f} | {med('p50_ms'):.2f} | {med('p99_ms'):.2f} | "
          f"{server('server_ack_p50_ms')} | {server('server_ack_p99_ms')} | "
          f"{total('rejected')} | {total('lost')} | {total('duplicated')} | {total('diverged')} | {total('errors')} |")
