"""Inclusive CPU shares of the server's main parts, from `perf script` output on stdin.

A sample counts toward a part when any frame of its stack matches the part's pattern; the
parts overlap (the actor's cycle contains the core's submit), so read them as a tree.
"""
import re
import sys

PARTS = [
    ("connection task (read, decode, write)", "spacesync_server::connection::serve"),
    ("  decode a client message", "Format::decode_client"),
    ("  socket send (kernel, incl. loopback delivery)", "__send"),
    ("  socket recv", "__libc_recv"),
    ("actor cycle", "spacesync_server::actor::Actor::cycle"),
    ("  core: submit an op", "spacesync_core::space::Space::submit"),
    ("    parse into actions", "spacesync_core::action::parse"),
    ("    apply to the state", "spacesync_core::space::Space::apply_now"),
    ("    op-id memory (Seen)", r"spacesync_core::space::(seen::)?Seen::"),
    ("actor settle (acks, broadcasts)", "spacesync_server::actor::Actor::settle"),
    ("committer and store", "spacesync_server::committer::"),
    ("  PostgreSQL client (encode, protocol)", "tokio_postgres::"),
    ("allocator (malloc, free, page faults)", r"^(_?mi_|mi_)"),
    ("tokio scheduler idle/park", "park_internal"),
]


def stacks(lines):
    frames = []
    for line in lines:
        if not line.strip():
            if frames:
                yield frames
            frames = []
        elif line[0] in " \t":
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                frames.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1].split(" (")[0]))
    if frames:
        yield frames


def main():
    counts = [0] * len(PARTS)
    total = 0
    for frames in stacks(sys.stdin):
        total += 1
        for index, (_, pattern) in enumerate(PARTS):
            if any(re.search(pattern, frame) for frame in frames):
                counts[index] += 1
    if total == 0:
        sys.exit("no samples")
    print(f"| part of spacesync serve | share of its CPU ({total} samples) |")
    print("|---|---:|")
    for (label, _), count in zip(PARTS, counts):
        print(f"| {label.replace('  ', '&nbsp;&nbsp;')} | {100 * count / total:.1f}% |")


if __name__ == "__main__":
    main()
