#!/usr/bin/env python3
"""Throughput vs p99 latency as the offered rate rises, from scripts/bench-load.sh results.

    python3 scripts/plot.py docs/bench/results.jsonl docs/bench/throughput-vs-p99.svg

Plain SVG, no plotting library: x = acknowledged ops/s, y = p99 ack latency (ms, log scale),
one point per offered rate (labelled with its fraction of peak), the 10 ms target as a line.
"""
import json
import math
import sys

results, target = sys.argv[1], sys.argv[2]
points = []
for line in open(results):
    row = json.loads(line)
    if row["tag"].startswith("sweep-"):
        r = row["result"]
        points.append((float(row["tag"][6:]), r["acked_ops_per_s"], max(r["p99_ms"], 0.1)))
points.sort()
W, H, L, R, T, B = 720, 440, 70, 30, 40, 60
xmax = max(p[1] for p in points) * 1.1
ymin, ymax = 0.5, max(max(p[2] for p in points) * 2, 20)


def x(v):
    return L + (W - L - R) * v / xmax


def y(v):
    return T + (H - T - B) * (1 - (math.log10(v) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin)))


svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="22" text-anchor="middle" font-size="15">spacesync: acknowledged ops/s vs p99 ack latency (open loop, 400 spaces)</text>']
for tick in [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]:
    if ymin <= tick <= ymax:
        svg.append(f'<line x1="{L}" x2="{W-R}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>')
        svg.append(f'<text x="{L-6}" y="{y(tick)+4:.1f}" text-anchor="end">{tick:g}</text>')
step = 10 ** math.floor(math.log10(xmax / 5))
step *= 2 if xmax / step > 10 else 1
v = 0
while v <= xmax:
    svg.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{T}" y2="{H-B}" stroke="#eee"/>')
    svg.append(f'<text x="{x(v):.1f}" y="{H-B+16}" text-anchor="middle">{v:,.0f}</text>')
    v += step
svg.append(f'<line x1="{L}" x2="{W-R}" y1="{y(10):.1f}" y2="{y(10):.1f}" stroke="#d33" stroke-dasharray="6 4"/>')
svg.append(f'<text x="{W-R-4}" y="{y(10)-6:.1f}" text-anchor="end" fill="#d33">target p99 10 ms</text>')
svg.append('<polyline fill="none" stroke="#36c" stroke-width="2" points="' +
           " ".join(f"{x(p[1]):.1f},{y(p[2]):.1f}" for p in points) + '"/>')
for fraction, ops, p99 in points:
    svg.append(f'<circle cx="{x(ops):.1f}" cy="{y(p99):.1f}" r="4" fill="#36c"/>')
    svg.append(f'<text x="{x(ops)+6:.1f}" y="{y(p99)-6:.1f}" fill="#333">{fraction:g}×peak</text>')
svg.append(f'<text x="{(L+W-R)/2}" y="{H-18}" text-anchor="middle">acknowledged ops/s (durable)</text>')
svg.append(f'<text x="18" y="{(T+H-B)/2}" text-anchor="middle" transform="rotate(-90 18 {(T+H-B)/2})">p99 ack latency, ms (log)</text>')
svg.append(f'<rect x="{L}" y="{T}" width="{W-L-R}" height="{H-T-B}" fill="none" stroke="#999"/>')
svg.append("</svg>")
open(target, "w").write("\n".join(svg))
print(f"wrote {target} ({len(points)} points)")
