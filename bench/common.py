"""Benchmark helpers: interleaved repetitions, medians and ratios measured side by side."""

from __future__ import annotations

import platform
import re
import statistics
import subprocess
import time
from typing import Callable


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 2,
                self_timed: bool = False) -> dict[str, float]:
    """Median seconds of each callable, run in turn so that drift hits all alike; the order
    rotates every round (A B C, B C A, C A B, ...), because running first or last in a round
    was seen to cost a few percent by itself (cache and allocator state left by the others).
    With `self_timed`, each callable returns its own duration in seconds (CUDA events)."""
    names = list(candidates)
    for _ in range(warmup):
        for run in candidates.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            result = candidates[name]()
            samples[name].append(result if self_timed else time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def instructions(command: list[str], **run) -> int | None:
    """The instructions `command` executes, counted by callgrind (its `I refs`), or None when valgrind gives no
    count; `run` goes to subprocess.run (`cwd`, `env`). Unlike time, the count does not move with the load."""
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
                          capture_output=True, text=True, check=False, **run)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    return int(found.group(1).replace(",", "")) if found else None
