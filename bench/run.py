"""Run resgraph's benchmarks and print a markdown table for docs/performance.md.

    .venv/bin/python bench/run.py [--quick] [--only forward,validate,...]

Each figure is a ratio of medians over interleaved repetitions, measured side by side in one run,
against a reference written by someone else (torchvision) or by hand (bench/cifar_reference.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import instructions, interleaved, machine  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []


def row(figure: str, measured: str, target: str, verdict: str) -> None:
    ROWS.append((figure, measured, target, verdict))
    print(f"| {figure} | {measured} | {target} | {verdict} |", flush=True)


def forward(quick: bool) -> None:
    import torch
    import torchvision

    import resgraph
    from cifar_reference import CifarResNet

    torch.manual_seed(0)
    cases = [
        ("resnet50, batch 8, 224x224", "resnet50", lambda: torchvision.models.resnet50(), (8, 3, 224, 224), 1.01,
         5 if quick else 15, {}),
        ("resnet18, batch 1, 32x32", "resnet18", lambda: torchvision.models.resnet18(), (1, 3, 32, 32), 1.02,
         50 if quick else 300, {}),
        ("CIFAR resnet110, batch 1, 32x32", "cifar_resnet20", lambda: CifarResNet(18), (1, 3, 32, 32), 1.02,
         30 if quick else 200, {"n": 18}),
    ]
    for label, spec, make_reference, shape, target, repeats, params in cases:
        reference = make_reference().eval()
        model = resgraph.compile(SPECS / f"{spec}.yaml", params=params or None).eval()
        model.load_state_dict(reference.state_dict(), strict=True)
        x = torch.randn(shape)
        with torch.inference_mode():
            assert torch.allclose(model(x), reference(x), atol=1e-5)

            def run_model():
                model(x)

            def run_reference():
                reference(x)

            times = interleaved({"resgraph": run_model, "reference": run_reference}, repeats)
        ratio = times["resgraph"] / times["reference"]
        row(f"forward, {label}, CPU, eval, inference_mode",
            f"{times['resgraph'] * 1e3:.2f} ms vs {times['reference'] * 1e3:.2f} ms: ratio {ratio:.3f}",
            f"≤ {target}", "met" if ratio <= target else "missed")


def torch_compile(quick: bool) -> None:
    import torch
    import torchvision

    import resgraph

    reference = torchvision.models.resnet18().eval()
    model = resgraph.compile(SPECS / "resnet18.yaml").eval()
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch._dynamo.reset()
    start = time.perf_counter()
    compiled = torch.compile(model, fullgraph=True)
    with torch.inference_mode():
        out = compiled(x)
        expected = reference(x)
    seconds = time.perf_counter() - start
    explanation = torch._dynamo.explain(model)(x)
    diff = (out - expected).abs().max().item()
    ok = explanation.graph_break_count == 0 and diff < 1e-4
    row("torch.compile(resnet18, fullgraph=True)",
        f"{explanation.graph_count} graph, {explanation.graph_break_count} breaks, max diff {diff:.1e} "
        f"vs torchvision, first call {seconds:.1f} s", "no graph break, same output", "met" if ok else "missed")


def _wall(command: list[str], repeats: int) -> float:
    import statistics

    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=False, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def validate_process(quick: bool) -> None:
    repeats = 3 if quick else 7
    exe = str(Path(sys.executable).parent / "resgraph")
    validate = [exe, "validate", str(SPECS / "resnet152.yaml")]
    torch_import = [sys.executable, "-c", "import torch"]
    samples = {"validate": [], "torch": []}
    import statistics

    for _ in range(repeats):  # interleaved
        samples["validate"].append(_wall(validate, 1))
        samples["torch"].append(_wall(torch_import, 1))
    v, t = statistics.median(samples["validate"]), statistics.median(samples["torch"])
    row("whole-process `resgraph validate specs/resnet152.yaml`",
        f"{v:.3f} s vs `import torch` {t:.3f} s (ratio {v / t:.2f})", "≤ 0.5 s, far below the torch import",
        "met" if v <= 0.5 and v < t / 2 else "missed")


def startup(quick: bool) -> None:
    """Whole-process start-up, side by side with `python -c pass`: what an editor without LSP, a
    pre-commit hook or a CI linter pays per file. Two floors show what any validator built on the same
    libraries pays before doing anything: PyYAML and one pydantic model validated, with and without click.

    resgraph's `.pyc` files are written first, as `pip install` does (an editable checkout with
    PYTHONDONTWRITEBYTECODE set would otherwise compile every module in every run). Where valgrind is
    installed, each command's instruction count is given too: unlike time, it does not move with the
    machine's load."""
    import compileall
    import shutil
    import statistics

    compileall.compile_dir(str(ROOT / "resgraph"), quiet=1)
    repeats = 5 if quick else 15
    model = "from pydantic import BaseModel\nclass A(BaseModel):\n    x: int\nA(x=1)"
    commands = {"pass": [sys.executable, "-c", "pass"],
                "floor": [sys.executable, "-c", "import yaml, click\n" + model],
                "floor without click": [sys.executable, "-c", "import yaml\n" + model],
                "import": [sys.executable, "-c", "import resgraph"],
                "validate": [sys.executable, "-m", "resgraph", "validate", str(SPECS / "resnet152.yaml")]}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):  # interleaved
        for name, command in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            samples[name].append(_wall(command, 1))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    wall = {name: statistics.median(samples[name]) for name in commands}
    used = {name: statistics.median(cpu[name]) for name in commands}
    counts = {name: instructions(command) for name, command in commands.items()} if shutil.which("valgrind") \
        else {}

    def cell(name: str) -> str:
        text = f"{wall[name]:.3f} s; {used[name]:.3f} s CPU"
        return text + (f"; {counts[name] / 1e6:,.0f} M instructions" if counts.get(name) else "")

    v = wall["validate"]
    row("start-up: `python -m resgraph validate specs/resnet152.yaml`, whole process (wall; CPU; instructions)",
        f"{cell('validate')}. `import resgraph` {cell('import')}. `python -c pass` {cell('pass')}. "
        f"Floor, yaml + click + pydantic with one model: {cell('floor')}; without click: "
        f"{cell('floor without click')}", "≤ 0.15 s", "met" if v <= 0.15 else "missed")


def lsp_revalidate(quick: bool) -> None:
    """`resgraph lsp`: the work after one edit of resnet152 (every pass on the unsaved text, the
    include from the cache, diagnostics converted to the protocol's types), warm, in process."""
    import statistics

    from pygls.uris import from_fs_path

    from resgraph.lsp import ResgraphServer, _Document

    server = ResgraphServer()
    published = []
    server.text_document_publish_diagnostics = published.append   # no client: keep what would be sent
    path = SPECS / "resnet152.yaml"
    uri = from_fs_path(str(path))
    text = path.read_text()
    server.documents[uri] = _Document(uri, str(path), text, 1)
    server.analyse(uri)
    reads = server.cache.reads
    edits = [text.replace("num_classes: 1000", f"num_classes: {1000 + n % 7}") for n in range(7)]
    samples, cpu = [], []
    for n in range(20 if quick else 100):
        server.documents[uri].text = edits[n % len(edits)]
        start, start_cpu = time.perf_counter(), time.process_time()
        server.analyse(uri)
        samples.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    assert server.cache.reads == reads and published[-1].diagnostics == []
    median, worst = statistics.median(samples), max(samples)
    row("`resgraph lsp`: re-validation after an edit of resnet152 (warm, in process)",
        f"median {median * 1e3:.1f} ms ({statistics.median(cpu) * 1e3:.1f} ms CPU), max {worst * 1e3:.1f} ms over "
        f"{len(samples)} edits; included or "
        f"extended files read: {reads} when opened, none after an edit", "≤ 50 ms",
        "met" if median <= 0.05 else "missed")


def _chain_spec(blocks: int) -> str:
    """`blocks` residual units (linear + add) in a chain, as stages of at most 5,000 units."""
    stages = max(1, blocks // 5000)
    return (
        "resgraph: 1\nname: chain\ninput: [16]\n"
        "blocks:\n  unit:\n    nodes:\n      fc: {op: linear, out: 16}\n      add: {op: add, inputs: [fc, input]}\n"
        f"  stage:\n    nodes:\n      units: {{block: unit, repeat: {blocks // stages}}}\n"
        f"nodes:\n  body: {{block: stage, repeat: {stages}}}\n"
    )


def validate_scaling(quick: bool) -> None:
    import resgraph

    sizes = (1_000, 10_000, 100_000) if not quick else (1_000, 10_000)
    per_node = {}
    with tempfile.TemporaryDirectory() as directory:
        for nodes in sizes:
            path = Path(directory) / f"chain{nodes}.yaml"
            path.write_text(_chain_spec(nodes // 2))
            resgraph.validate(path)  # warm-up: lazy imports, caches
            start = time.perf_counter()
            diagnostics = resgraph.validate(path)
            seconds = time.perf_counter() - start
            tracemalloc.start()  # timed apart: tracing slows Python down several times
            resgraph.validate(path)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert not [d for d in diagnostics if d.is_error], diagnostics
            per_node[nodes] = seconds / (nodes + 1)
            row(f"validate a residual chain of {nodes:,} nodes", f"{seconds:.3f} s, "
                f"{per_node[nodes] * 1e6:.1f} µs/node, peak {peak / 2**20:.0f} MiB (tracemalloc)",
                "per-node time within 2x of the 1k chain",
                "met" if per_node[nodes] <= 2 * per_node[sizes[0]] else "missed")


def compile_time(quick: bool) -> None:
    import torch
    import torchvision

    import resgraph

    network = resgraph.load(SPECS / "resnet50.yaml")
    repeats = 3 if quick else 7
    times = interleaved({"resgraph": lambda: resgraph.compile(network),
                         "torchvision": lambda: torchvision.models.resnet50()}, repeats, warmup=1)
    ratio = times["resgraph"] / times["torchvision"]
    row("`resgraph.compile(resnet50)`, random init (spec already loaded)",
        f"{times['resgraph']:.3f} s vs `torchvision.models.resnet50()` {times['torchvision']:.3f} s: "
        f"ratio {ratio:.2f}", "≤ 1.2", "met" if ratio <= 1.2 else "missed")
    whole = interleaved({"path": lambda: resgraph.compile(SPECS / "resnet50.yaml"),
                         "torchvision": lambda: torchvision.models.resnet50()}, repeats, warmup=1)
    ratio = whole["path"] / whole["torchvision"]
    row("`resgraph.compile('specs/resnet50.yaml')` from the file",
        f"{whole['path']:.3f} s vs {whole['torchvision']:.3f} s: ratio {ratio:.2f}", "≤ 1.2",
        "met" if ratio <= 1.2 else "missed")
    meta = interleaved({"meta": lambda: resgraph.compile(SPECS / "resnet50.yaml", device="meta")}, repeats)["meta"]
    row("`resgraph.compile(resnet50, device='meta')` from the file", f"{meta:.3f} s", "≤ 0.1 s",
        "met" if meta <= 0.1 else "missed")
    del torch


_RSS = """
import sys
import torch, torchvision, resgraph

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])  # KiB

base = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
if sys.argv[1] == "resgraph":
    model = resgraph.compile("specs/resnet50.yaml")
else:
    model = torchvision.models.resnet50()
print(base, status("VmHWM:"))
"""


def compile_memory(quick: bool) -> None:
    results = {}
    for who in ("resgraph", "torchvision"):
        out = subprocess.run([sys.executable, "-c", _RSS, who], capture_output=True, text=True, cwd=ROOT, check=True)
        base, peak = map(int, out.stdout.split())
        results[who] = (peak - base) / 1024  # MiB
    ratio = results["resgraph"] / results["torchvision"]
    row("peak RSS added by building resnet50 (after imports)",
        f"{results['resgraph']:.0f} MiB vs torchvision {results['torchvision']:.0f} MiB: ratio {ratio:.2f}",
        "≤ 1.2", "met" if ratio <= 1.2 else "missed")


def render_time(quick: bool) -> None:
    exe = str(Path(sys.executable).parent / "resgraph")
    with tempfile.TemporaryDirectory() as directory:
        seconds = _wall([exe, "render", str(SPECS / "resnet152.yaml"), "-o", str(Path(directory) / "x.svg")],
                        1 if quick else 3)
    row("whole-process `resgraph render specs/resnet152.yaml -o x.svg`", f"{seconds:.2f} s", "≤ 3 s",
        "met" if seconds <= 3 else "missed")


def notebook_svg(quick: bool) -> None:
    """The notebook repr (`Network._repr_svg_`) of preact-resnet1001: the collapsed drawing, its size and time
    (the spec already loaded, as in a notebook cell that shows a network)."""
    import resgraph

    network = resgraph.load(SPECS / "preact_resnet1001.yaml")
    times, size = [], 0
    for _ in range(3 if quick else 7):
        start = time.perf_counter()
        size = len(network._repr_svg_().encode("utf-8"))
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    row("notebook SVG of preact-resnet1001 (`Network._repr_svg_`, median)", f"{seconds:.2f} s, {size / 1000:.0f} KB",
        "≤ 1 s, ≤ 500 KB", "met" if seconds <= 1 and size <= 500_000 else "missed")


def deep_net(quick: bool) -> None:
    import torch

    import resgraph

    path = SPECS / "preact_resnet1001.yaml"
    if not path.exists():
        return
    start = time.perf_counter()
    network = resgraph.load(path)
    validated = time.perf_counter() - start
    start = time.perf_counter()
    model = resgraph.compile(network).eval()
    compiled = time.perf_counter() - start
    with torch.inference_mode():
        start = time.perf_counter()
        model(torch.randn(1, 3, 32, 32))
        forward_s = time.perf_counter() - start
    row(f"preact-resnet1001 ({len(network.graph):,} nodes)",
        f"validate {validated:.2f} s, compile {compiled:.2f} s, one forward (1x3x32x32) {forward_s:.2f} s",
        "report; linear passes", "reported")


def _cuda_timed(run):
    """Wrap `run` so that one call is timed by CUDA events: the host clock would stop when the
    kernels are queued, not when they finish."""
    import torch

    def timed():
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    return timed


def gpu_forward(quick: bool) -> None:
    """The forward comparison on a CUDA device, where one is present (never in CI)."""
    import torch
    import torchvision

    import resgraph
    from cifar_reference import CifarResNet

    if not torch.cuda.is_available():
        row("forward on a GPU", "no CUDA device here: not run", "report", "not run")
        return
    print(f"GPU: {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}", flush=True)
    cases = [
        ("resnet50, batch 64, 224x224, bfloat16", "resnet50", torchvision.models.resnet50, (64, 3, 224, 224),
         torch.bfloat16, False, {}),
        ("resnet50, batch 64, 224x224, bfloat16, channels_last", "resnet50", torchvision.models.resnet50,
         (64, 3, 224, 224), torch.bfloat16, True, {}),
        ("resnet50, batch 64, 224x224, float32", "resnet50", torchvision.models.resnet50, (64, 3, 224, 224),
         torch.float32, False, {}),
        ("resnet18, batch 1, 32x32, float32 (launch-bound)", "resnet18", torchvision.models.resnet18,
         (1, 3, 32, 32), torch.float32, False, {}),
        ("CIFAR resnet110, batch 1, 32x32, float32 (launch-bound)", "cifar_resnet20", lambda: CifarResNet(18),
         (1, 3, 32, 32), torch.float32, False, {"n": 18}),
    ]
    for label, spec, make_reference, shape, dtype, channels_last, params in cases:
        torch.manual_seed(0)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        reference = make_reference().eval()
        model = resgraph.compile(SPECS / f"{spec}.yaml", params=params or None).eval()
        model.load_state_dict(reference.state_dict(), strict=True)
        reference = reference.to("cuda", dtype, memory_format=memory_format)
        model = model.to("cuda", dtype, memory_format=memory_format)
        x = torch.randn(shape, device="cuda").to(dtype, memory_format=memory_format)
        with torch.inference_mode():
            difference = (model(x).float() - reference(x).float()).abs().max().item()
            times = interleaved({"resgraph": _cuda_timed(lambda: model(x)),
                                 "reference": _cuda_timed(lambda: reference(x))},
                                20 if quick else 100, warmup=5, self_timed=True)
        ratio = times["resgraph"] / times["reference"]
        row(f"forward on the GPU, {label}, eval, inference_mode",
            f"{times['resgraph'] * 1e3:.2f} ms vs {times['reference'] * 1e3:.2f} ms: ratio {ratio:.3f}; "
            f"max abs diff {difference:.1e}", "report", "reported")


SECTIONS = {"forward": forward, "compile": torch_compile, "validate": validate_process, "startup": startup,
            "lsp": lsp_revalidate, "scaling": validate_scaling,
            "build": compile_time, "memory": compile_memory, "render": render_time, "notebook": notebook_svg,
            "deep": deep_net,
            "gpu": gpu_forward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, not for the record)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    args = parser.parse_args()
    os.chdir(ROOT)
    print(f"machine: {machine()}\n")
    print("| figure | measured | target | verdict |\n| --- | --- | --- | --- |", flush=True)
    for name in args.only.split(","):
        SECTIONS[name](args.quick)


if __name__ == "__main__":
    main()
