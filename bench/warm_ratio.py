"""Validate's warm per-node cost of two checkouts in instructions, and their ratio (issue 10: within 1.10).

    .venv/bin/python bench/warm_ratio.py OLD_CHECKOUT [NEW_CHECKOUT] [--spec chain|resnet152 ...] [-n N]

For each checkout and spec, runs bench/warm_validate.py under callgrind with COUNT = 1 and COUNT = 1 + N; the
difference of the two `I refs` is N warm validations, divided by N and by the spec's nodes (string hashing fixed
with PYTHONHASHSEED=0, so that a rerun gives the same count). Instruction counts
do not move with the load of a shared machine, so both sides may be measured at any time (the same day is
still best: the Python and its packages are part of the count). Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "warm_validate.py"
NODES = {"chain": 10_000, "resnet152": 508}
DEFAULT_N = {"chain": 1, "resnet152": 3}

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import instructions  # noqa: E402


def probe_instructions(checkout: Path, spec: str, count: int) -> int:
    """The instructions of bench/warm_validate.py validating `spec` `count` times with `checkout`'s resgraph."""
    target = "chain" if spec == "chain" else str(checkout / "specs" / f"{spec}.yaml")
    counted = instructions([sys.executable, str(PROBE), str(checkout), target, str(count)], cwd="/",
                           env={**os.environ, "PYTHONHASHSEED": "0"})
    if counted is None:
        raise SystemExit(f"valgrind gave no instruction count for {checkout} {spec}")
    return counted


def per_validation(checkout: Path, spec: str, n: int) -> float:
    return (probe_instructions(checkout, spec, 1 + n) - probe_instructions(checkout, spec, 1)) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=ROOT)
    parser.add_argument("--spec", action="append", choices=sorted(NODES))
    parser.add_argument("-n", type=int, help="warm validations measured (default: 1 for chain, 3 for resnet152)")
    args = parser.parse_args()
    for spec in args.spec or ["chain", "resnet152"]:
        n = args.n or DEFAULT_N[spec]
        old, new = (per_validation(side.resolve(), spec, n) for side in (args.old, args.new))
        print(f"{spec} ({NODES[spec]:,} nodes, N = {n}): {old / 1e6:.1f} M -> {new / 1e6:.1f} M instructions "
              f"a validation, {old / NODES[spec] / 1e3:.1f} k -> {new / NODES[spec] / 1e3:.1f} k a node, "
              f"ratio {new / old:.3f}", flush=True)


if __name__ == "__main__":
    main()
