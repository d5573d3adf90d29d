"""Validate's per-node cost of two checkouts of resgraph, side by side (issue 10: unchanged within 10%).

    .venv/bin/python bench/validate_versions.py OLD_CHECKOUT [NEW_CHECKOUT] [--rounds 5]

Each round runs one fresh process per checkout, alternating, and each process times `resgraph.validate`
in-process (best of 5, after a warm-up) on a residual chain of 10,000 nodes and on specs/resnet152.yaml.
The machine is noisy: read the ratio of the medians, both sides measured in the same minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import resgraph
sys.path.insert(0, sys.argv[2])
from run import _chain_spec
out = {}
with tempfile.TemporaryDirectory() as directory:
    chain = Path(directory) / "chain.yaml"
    chain.write_text(_chain_spec(5_000))
    for name, path in (("chain10k", chain), ("resnet152", Path(sys.argv[3]))):
        nodes = len(resgraph.load(path).graph)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            resgraph.validate(path)
            best = min(best, time.perf_counter() - start)
        out[name] = best / nodes
print(json.dumps({"file": resgraph.__file__, **out}))
"""


def measure(checkout: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(checkout), str(ROOT / "bench"),
                           str(ROOT / "specs" / "resnet152.yaml")], capture_output=True, text=True, check=True,
                          cwd="/")
    result = json.loads(done.stdout)
    assert result.pop("file").startswith(str(checkout)), "imported another resgraph"
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=ROOT)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    samples: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for _ in range(args.rounds):
        for side in ("old", "new"):
            for key, value in measure(getattr(args, side).resolve()).items():
                samples[side].setdefault(key, []).append(value)
    for key in samples["old"]:
        old, new = statistics.median(samples["old"][key]), statistics.median(samples["new"][key])
        print(f"{key}: {old * 1e6:.1f} -> {new * 1e6:.1f} µs/node (median of {args.rounds}), ratio {new / old:.3f}")


if __name__ == "__main__":
    main()
