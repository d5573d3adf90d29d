"""Regenerate the table of torchvision classification models in docs/import.md: `resgraph import` run on
every name of `torchvision.models.list_models(module=torchvision.models)`.

    .venv/bin/python docs/import_table.py             # every model (built on the meta device): minutes
    .venv/bin/python docs/import_table.py NAME ...    # only these rows (the others are kept)

Each row is measured here, nothing is typed: the model is built on the meta device (no weights) and imported;
the importer itself checks that the spec compiles to the model's state_dict keys, order-free shapes and layer
settings. "imported" rows give the spec's blocks and nodes; the others give the one RG060 diagnostic's message.
Equal outputs (strict `load_state_dict`, randomised norms, eval mode) are measured by tests/test_import_zoo.py
(a cheap subset by default, every importable model under `pytest -m slow`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "import.md"
START, END = "<!-- import table: docs/import_table.py -->", "<!-- end of the import table -->"

# The input a model needs where the first layer's default ([3, 224, 224]) is not it.
INPUTS = {"inception_v3": (3, 299, 299)}


@dataclass
class Row:
    name: str
    imported: bool
    blocks: int = 0
    nodes: int = 0
    repeats: int = 0
    reason: str = ""
    seconds: float = 0.0

    def cells(self) -> str:
        if self.imported:
            result = (f"imported: {self.blocks} block{'s' * (self.blocks != 1)}, {self.repeats} `repeat` "
                      f"call{'s' * (self.repeats != 1)}, {self.nodes} nodes")
        else:
            result = "RG060: " + self.reason.replace("|", "\\|").replace("\n", " ")
        return f"| `{self.name}` | {result} |"


def build(name: str, device: str = "meta", **kwargs):
    """torchvision's model `name`; RegNet's stage widths are computed on the CPU (tests/zoo's `tv`)."""
    import torch

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.zoo.torchvision_existing import tv

    with torch.device(device):
        return tv(name, **kwargs)()


def count(text: str) -> tuple[int, int, int]:
    """(blocks, nodes, repeat calls) of an imported spec, read back through resgraph's own loader."""
    import resgraph

    network = resgraph.load(Path("imported.yaml"), text=text)
    spec = network.spec
    blocks = spec.blocks or {}
    nodes = len(spec.nodes) + sum(len(b.nodes) for b in blocks.values())
    repeats = sum(1 for owner in [spec, *blocks.values()] for node in owner.nodes.values()
                  if getattr(node, "repeat", None) is not None)
    return len(blocks), nodes, repeats


def measure(name: str) -> Row:
    from resgraph import SpecError
    from resgraph.importer import import_module

    start = time.perf_counter()
    model = build(name)
    try:
        text = import_module(model, INPUTS.get(name), name=name)
    except SpecError as exc:
        assert len(exc.errors) == 1, f"{name}: {len(exc.errors)} diagnostics"
        assert exc.errors[0].code == "RG060", f"{name}: {exc.errors[0].code}"
        return Row(name, False, reason=exc.errors[0].message, seconds=time.perf_counter() - start)
    blocks, nodes, repeats = count(text)
    return Row(name, True, blocks, nodes, repeats, seconds=time.perf_counter() - start)


def existing_rows(text: str) -> dict[str, str]:
    inside = text.split(START, 1)[1].split(END, 1)[0] if START in text else ""
    return {line.split("`")[1]: line for line in inside.splitlines() if line.startswith("| `")}


def main(argv: list[str]) -> None:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    wanted = argv or names
    lines = {}
    for name in wanted:
        row = measure(name)
        print(f"{name}: {row.cells()} ({row.seconds:.1f} s)", flush=True)
        lines[name] = row
    text = DOC.read_text(encoding="utf-8")   # read now: the page may have been edited while this ran
    kept = existing_rows(text)
    rows_text = [lines[n].cells() if n in lines else kept.get(n) for n in names]
    missing = [n for n, line in zip(names, rows_text) if line is None]
    if missing:
        raise SystemExit(f"no row yet for {missing}: run without names")
    done = sum(1 for line in rows_text if "| imported:" in line)
    block = "\n".join([START, "", f"{done} of {len(names)} models import exactly.", "",
                       "| model | `resgraph import` |", "|-------|------------------|", *rows_text, "", END])
    if START in text:
        before, rest = text.split(START, 1)
        text = before + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
