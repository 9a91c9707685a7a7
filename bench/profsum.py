"""Summarise py-spy raw profiles (``python -m bench --profile DIR`` writes them).

``python -m bench.profsum DIR/worker-redis.txt [--top 25] [--focus orquestrador/]``

py-spy's raw format is one collapsed stack per line with a sample count; stacks that end in a
wait (a thread pool's idle worker, ``select``) are left out. Printed: the share of samples per
*self* frame (``function (file:line)``, where the CPU was) and per *inclusive* function
(``function (file)``, counted once per stack), paths shortened to the package. With ``--focus``,
the ``at`` lines give, per stack, the innermost frame of that package with its line.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Leaf frames that only wait (py-spy does not always see them as idle): left out of the total.
_WAITING = (
    ("_worker", "concurrent/futures/thread.py"),
    ("wait", "threading.py"),
    ("select", "selectors.py"),
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def parse(path: Path) -> list[tuple[list[tuple[str, str, str]], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            continue
        frames = []
        for raw in body.split(";"):
            m = _FRAME.match(raw.strip())
            if m:
                frames.append((m["func"], _short(m["file"]), m["line"] or "?"))
        if frames and any(f == frames[-1][0] and p in frames[-1][1] for f, p in _WAITING):
            continue
        stacks.append((frames, int(count)))
    return stacks


def summarise(path: Path, top: int = 25, focus: str | None = None) -> str:
    stacks = parse(path)
    total = sum(c for _, c in stacks) or 1
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        if not frames:
            continue
        func, file, line = frames[-1]
        self_time[f"{func} ({file}:{line})"] += count
        seen = set()
        for func, file, _line in frames:
            key = f"{func} ({file})"
            if focus and focus not in file:
                continue
            if key not in seen:
                seen.add(key)
                inclusive[key] += count
        if focus:  # the innermost frame of the focus package on this stack, with its line
            for func, file, line in reversed(frames):
                if focus in file:
                    inclusive[f"  at {func} ({file}:{line})"] += count
                    break
    out = [f"{path.name}: {total} samples (non-idle)", "", "self (where the CPU was):"]
    out += [f"  {100 * c / total:5.1f}%  {k}" for k, c in self_time.most_common(top)]
    out += ["", f"inclusive{' (' + focus + ')' if focus else ''}:"]
    out += [f"  {100 * c / total:5.1f}%  {k}" for k, c in inclusive.most_common(top * 2)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profsum")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--focus", default=None, help="only frames whose file contains this")
    args = parser.parse_args()
    for file in args.files:
        print(summarise(file, args.top, args.focus))
        print()


if __name__ == "__main__":
    main()
