"""The mutant fuzz of issue 14: valid specs (specs/, tests/cases/) mutated at random -- numbers made extreme, nodes
renamed to keywords and module attributes, keys deleted and duplicated, inputs swapped, expressions made huge --
then `validate`, and where it says ok, `compile` on the meta device, each in this process under a limit of CPU time.

The criteria: no exception but SpecError (an "internal error", the CLI's exit 3), no case over 5 s, and no spec
that validates but does not compile. tests/test_mutant_fuzz.py runs a seeded slice; the full run is

    python -m tests.mutant_fuzz --count 10000 --seed 0 --json fuzz.json

and docs/robustness.md records its results.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import random
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLOW_SECONDS = 5.0   # of CPU time (time.process_time): seven people share two cores, so wall time says little
# Compiling is linear in the network's size (torch builds every module; ~0.5 ms a node on an idle core): a valid
# network of more than LARGE nodes may take longer than SLOW_SECONDS, but never more than SLOW_PER_NODE a node.
LARGE = 2_000
SLOW_PER_NODE = 0.005
HANG_SECONDS = 30.0   # of CPU time (validate; compile: at least): SIGPROF stops a case stuck in Python code, a hang

EXTREME_NUMBERS = [0, 1, -1, 2, 3, 2**31 - 1, 2**31, 2**62, -(2**62), 2**63, 10**30, 0.5, 1e-300, 5e-324, 1e300,
                   1e308, -1e308, 1.7976931348623157e308, float("nan"), float("inf"), float("-inf")]
EXTREME_EXPRESSIONS = ["2**62", "-2**62", "2**62 + 1", "10**18 // 3", "round(1, -10**18)", "round(1e308, 64)",
                       "shape(input)[0] * 2**40", "make_divisible(1e308, 5e-324)", "floor(1e308)", "2**64 // 2**3",
                       "int('9' * 40)", "1e308 * 10", "(-8) ** 0.5", "max(" + ", ".join(["2**62"] * 20) + ")",
                       "[1] * 10**9", "'a' * 10**9", "1 / 0", "shape(x)[9]", "min([])", "abs(-2**62)"]
NAMES = ["class", "def", "None", "True", "lambda", "forward", "to", "cuda", "eval", "train", "parameters",
         "training", "state_dict", "modules", "graph", "code", "meta", "_modules", "x", "self", "torch", "input",
         "F", "nn", "output", "add", "relu", "__init__", "fc_", "a" * 200]


@functools.lru_cache(maxsize=1)
def _seed_specs() -> tuple[Path, ...]:
    return tuple(seed_specs())


def seed_specs(bad: bool = False) -> list[Path]:
    """The valid specs that mutants start from (a block library is no good seed); with `bad`, the invalid cases of
    tests/cases/bad/ instead (their mutants exercise `validate` on specs that are wrong to begin with)."""
    import resgraph

    if bad:   # those that are YAML mappings at least
        from resgraph.diagnostics import Diagnostics
        from resgraph.source import load_source

        paths = sorted((ROOT / "tests" / "cases" / "bad").glob("*.yaml"))
        found = [(path, load_source(path, Diagnostics())) for path in paths]
        return [path for path, source in found if source is not None and isinstance(source.data, dict)]
    paths = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "tests" / "cases").rglob("*.yaml"))
    seeds = []
    for path in paths:
        if "bad" in path.parts:
            continue
        diagnostics = resgraph.validate(path)
        if not any(d.is_error for d in diagnostics):
            seeds.append(path)
    return seeds


def _paths(value, prefix=()):
    yield prefix, value
    if isinstance(value, dict):
        for key, child in list(value.items()):
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


def _parent(data, path):
    for segment in path[:-1]:
        data = data[segment]
    return data


def mutate(data: dict, rng: random.Random, steps: int) -> list[str]:
    """Apply `steps` random mutations to `data` in place; returns what was done (for reports)."""
    done = []
    for _ in range(steps):
        located = [(p, v) for p, v in _paths(data) if p]
        numbers = [(p, v) for p, v in located if isinstance(v, (int, float)) and not isinstance(v, bool)]
        strings = [(p, v) for p, v in located if isinstance(v, str)]
        mappings = [(p, v) for p, v in located if isinstance(v, dict) and v]
        lists = [(p, v) for p, v in located if isinstance(v, list) and len(v) >= 2]
        kind = rng.choice(["number", "number", "number", "expression", "rename", "delete", "duplicate", "swap",
                           "string", "repeat"])
        if kind == "number" and numbers:
            path, _ = rng.choice(numbers)
            _parent(data, path)[path[-1]] = rng.choice(EXTREME_NUMBERS)
        elif kind == "expression" and (numbers or strings):
            path, _ = rng.choice(numbers + strings)
            _parent(data, path)[path[-1]] = rng.choice(EXTREME_EXPRESSIONS)
        elif kind == "rename" and mappings:
            # mostly a node or a block call (those names reach generated code and module attributes)
            scopes = [(p, m) for p, m in mappings if p[-1] == "nodes"]
            path, mapping = rng.choice(scopes if scopes and rng.random() < 0.8 else mappings)
            old = rng.choice(list(mapping))
            new = rng.choice(NAMES)
            if new not in mapping:
                # Keep the order: the node (or key) stays where it was, under its new name.
                items = [(new if key == old else key, value) for key, value in mapping.items()]
                mapping.clear()
                mapping.update(items)
                if rng.random() < 0.7:   # and its references, as a careful author would rename it
                    _rename_references(data, old, new)
        elif kind == "delete" and located:
            path, _ = rng.choice(located)
            parent = _parent(data, path)
            del parent[path[-1]]
        elif kind == "duplicate" and mappings:
            path, mapping = rng.choice(mappings)
            key = rng.choice(list(mapping))
            mapping[f"{key}_copy"] = copy.deepcopy(mapping[key])
        elif kind == "swap" and lists:
            path, items = rng.choice(lists)
            i, j = rng.sample(range(len(items)), 2)
            items[i], items[j] = items[j], items[i]
        elif kind == "string" and strings:
            path, _ = rng.choice(strings)
            _parent(data, path)[path[-1]] = rng.choice([s for _, s in strings] + NAMES)
        elif kind == "repeat" and mappings:
            path, mapping = rng.choice(mappings)
            # 10**6 and more meet the node limit (RG035) before expanding; 300 keeps big nets compilable in seconds
            mapping["repeat"] = rng.choice([0, 1, 300, 10**6, 2**62, "2**62", -1])
        else:
            continue
        done.append(f"{kind} at {'.'.join(map(str, path))}")
    return done


def _rename_references(data, old: str, new: str) -> None:
    for path, value in list(_paths(data)):
        if path and value == old and path[-1] != "op":
            _parent(data, path)[path[-1]] = new


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


@dataclass
class Outcome:
    kind: str            # "error" (diagnostics only), "compiled", "internal", "hang", "compile-fails", "unlocated"
    seconds: float
    detail: str = ""
    nodes: int = 0       # of the expanded network, where validate accepted it

    @property
    def slow(self) -> bool:
        return self.seconds > SLOW_SECONDS and (self.nodes <= LARGE or self.seconds > SLOW_PER_NODE * self.nodes)


def run_case(path: Path, text: str) -> Outcome:
    """validate, then compile on meta where validate says ok; in this process, timed in CPU seconds."""
    import resgraph

    start, nodes = time.process_time(), 0
    previous = signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, HANG_SECONDS)
    stage = "validate"
    try:
        diagnostics = resgraph.validate(path, text=text)
        unlocated = [d for d in diagnostics if d.is_error and d.span is None and d.code != "RG035"]
        if unlocated:
            return Outcome("unlocated", time.process_time() - start, f"{unlocated[0].code}: {unlocated[0].message}")
        if any(d.is_error for d in diagnostics):
            return Outcome("error", time.process_time() - start)
        network = resgraph.load(path, text=text)
        if network is None or not network.graph.outputs:
            return Outcome("error", time.process_time() - start)
        stage, nodes = "compile", len(network.graph)
        # a big valid network may compile for SLOW_PER_NODE a node; twice that is a hang
        signal.setitimer(signal.ITIMER_PROF, max(HANG_SECONDS, 2 * SLOW_PER_NODE * nodes))
        model = resgraph.compile(network, device="meta")
        counted = sum(p.numel() for p in model.parameters())
        if counted != network.params:
            return Outcome("compile-fails", time.process_time() - start,
                           f"{counted:,} parameters, the shape rules counted {network.params:,}", nodes)
        return Outcome("compiled", time.process_time() - start, nodes=nodes)
    except _Hang:
        return Outcome("hang", time.process_time() - start, stage, nodes)
    except resgraph.SpecError as exc:
        if stage == "compile":
            return Outcome("compile-fails", time.process_time() - start, str(exc).splitlines()[0][:300], nodes)
        return Outcome("error", time.process_time() - start)   # e.g. a library without nodes
    except Exception as exc:  # noqa: BLE001 - what the fuzz looks for
        where = traceback.extract_tb(exc.__traceback__)[-1]
        detail = f"{type(exc).__name__}: {str(exc)[:200]} ({Path(where.filename).name}:{where.lineno})"
        return Outcome("compile-fails" if stage == "compile" else "internal", time.process_time() - start, detail,
                       nodes)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


@dataclass
class Report:
    count: int = 0
    outcomes: Counter = field(default_factory=Counter)
    failures: list[dict] = field(default_factory=list)
    slow: list[dict] = field(default_factory=list)
    over_5s: list[dict] = field(default_factory=list)   # slow ones and big networks within SLOW_PER_NODE
    seconds: float = 0.0       # wall
    cpu_seconds: float = 0.0
    slowest: float = 0.0       # CPU seconds of the slowest case

    @property
    def bad(self) -> list[dict]:
        return self.failures + self.slow


def mutant(seeds: list[Path], rng: random.Random) -> tuple[Path, str, list[str]]:
    from resgraph.diagnostics import Diagnostics
    from resgraph.source import load_source

    path = rng.choice(seeds)
    data = copy.deepcopy(load_source(path, Diagnostics()).data)
    done = mutate(data, rng, 1 if rng.random() < 0.5 else rng.randint(2, 3))
    # JSON is YAML; non-finite floats as YAML writes them
    text = json.dumps(data, allow_nan=True).replace("-Infinity", "-.inf").replace("Infinity", ".inf") \
        .replace("NaN", ".nan")
    return path, text, done


def run(count: int, seed: int = 0, seeds: list[Path] | None = None, progress=None) -> Report:
    import resgraph

    seeds = seeds if seeds is not None else list(_seed_specs())
    resgraph.compile(ROOT / "specs" / "resnet18.yaml", device="meta")   # import torch before the clock runs
    report = Report()
    start, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        rng = random.Random(f"{seed}:{index}")
        path, text, done = mutant(seeds, rng)
        outcome = run_case(path, text)
        report.count += 1
        report.outcomes[outcome.kind] += 1
        report.slowest = max(report.slowest, outcome.seconds)
        case = {"index": index, "seed": path.relative_to(ROOT).as_posix(), "mutations": done, "kind": outcome.kind,
                "seconds": round(outcome.seconds, 3), "nodes": outcome.nodes, "detail": outcome.detail}
        if outcome.kind not in ("error", "compiled"):
            report.failures.append(case)
        elif outcome.slow:
            report.slow.append(case)
        if outcome.seconds > SLOW_SECONDS:
            report.over_5s.append(case)
        report.seconds, report.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        if progress is not None:
            progress(index, outcome, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the report here (rewritten every 100 cases)")
    parser.add_argument("--bad", action="store_true", help="mutate tests/cases/bad/ instead of the valid specs")
    parser.add_argument("--show", type=int, metavar="INDEX", help="print mutant INDEX's seed, mutations and text")
    args = parser.parse_args(argv)
    if args.show is not None:
        path, text, done = mutant(seed_specs(args.bad), random.Random(f"{args.seed}:{args.show}"))
        print(path, done, text, sep="\n")
        return 0

    def progress(index, outcome, report):
        if outcome.kind not in ("error", "compiled") or outcome.seconds > SLOW_SECONDS:
            print(f"[{index}] {outcome.kind} {outcome.seconds:.2f}s {outcome.nodes} nodes {outcome.detail}", flush=True)
        if args.json and (index + 1) % 100 == 0:
            _write(args.json, report)

    report = run(args.count, args.seed, seeds=seed_specs(True) if args.bad else None, progress=progress)
    if args.json:
        _write(args.json, report)
    print(json.dumps({"count": report.count, "outcomes": dict(report.outcomes), "seconds": round(report.seconds, 1),
                      "cpu_seconds": round(report.cpu_seconds, 1),
                      "slowest": round(report.slowest, 2), "failures": len(report.failures),
                      "slow": len(report.slow), "over_5s": len(report.over_5s)}))
    return 1 if report.bad else 0


def _write(path: str, report: Report) -> None:
    Path(path).write_text(json.dumps({"count": report.count, "outcomes": dict(report.outcomes),
                                      "seconds_so_far": round(report.seconds, 1),
                                      "cpu_seconds_so_far": round(report.cpu_seconds, 1),
                                      "slowest": round(report.slowest, 2), "failures": report.failures,
                                      "slow": report.slow, "over_5s": report.over_5s}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
