"""The figures and listings in README.md and docs/ are what resgraph computes.

Listings of `specs/` must list every spec (a spec added to specs/ fails here until the docs show
it); the parameter and MAC counts quoted next to a spec must be that spec's, at the params the
text sets with `--set`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
from click.testing import CliRunner

import resgraph
from resgraph.cli import main
from resgraph.source import parse_value

from .conftest import ROOT, SPECS

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPEC_MENTION = re.compile(r"specs/(\w+)\.yaml")
SET = re.compile(r"--set(?:-b)?\s+(\w+)=([^\s`]+)")
INPUT = re.compile(r"--input\s+(\d+(?:[x,]\d+)*)")
# 10,000 and more with thousands separators, or seven digits and more without
FIGURE = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d{7,})(?![\w.]|,\d)")


@lru_cache(maxsize=None)
def _network(name: str, sets: tuple = ()) -> resgraph.Network:
    params = {key: value for key, value in sets if key != "--input"}
    shape = next((value for key, value in sets if key == "--input"), None)
    return resgraph.load(SPECS / f"{name}.yaml", params=params or None,
                         inputs=[int(d) for d in re.split("[x,]", shape)] if shape else None)


def _figures(network: resgraph.Network, partner: resgraph.Network | None = None) -> set[int]:
    """Everything a doc may quote about a spec: totals, node count and each node's own counts, its summary's
    activation bytes and block subtotals; and with the other network of a `diff`, the differences of totals."""
    from resgraph.report import activation_bytes, block_totals

    figures = {network.params, network.macs, len(network.graph)}
    for node in network.graph:
        figures |= {node.meta.get("params", 0), node.meta.get("macs", 0), activation_bytes(node)}
        for plan in node.meta.get("shortcuts") or ():   # a projection's convolution and norm, counted apart
            figures |= {plan.in_shape[0] * plan.out_shape[0], 2 * plan.out_shape[0]}
    figures.add(sum(activation_bytes(node) for node in network.graph))
    for entry in block_totals(network.graph):
        figures |= {entry["params"], entry["macs"], entry["activation_bytes"]}
    if partner is not None:   # `diff A B`: A's figures, and the differences
        figures |= _figures(partner) | {abs(network.params - partner.params), abs(network.macs - partner.macs)}
    return figures


def _claims(path: Path):
    """(line number, spec, params, figure) for each figure quoted where a spec is the subject: on a line naming
    `specs/NAME.yaml` (with the params its command sets: `--set k=v`, or a Python dict after the path), in a code
    block after such a line, or in a section whose heading names the spec. docs/gallery.md's zoo table is left to
    `test_gallery_has_every_spec_with_its_figures`: its rows give figures at the params each comparison used."""
    section, subject, sets, in_code, partner = None, None, (), False, None
    in_zoo = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("<!-- zoo table") or line.startswith("<!-- end of the zoo table"):
            in_zoo = line.startswith("<!-- zoo table")
            continue
        if in_zoo:
            continue
        if line.startswith("```"):
            in_code = not in_code
            subject, sets, partner = None, (), None
            continue
        mentions = SPEC_MENTION.findall(line)
        if line.startswith("#") and not in_code:
            section = mentions[-1] if mentions else None
        if mentions:
            given = _given_params(line) if in_code else ()
            if partner is not None and set(mentions) <= {partner, subject} and "resgraph diff" not in line:
                pass   # the output of `diff` names both of its specs
            elif mentions[-1] != subject or given:   # a command's output names its spec again: same params
                subject, sets = mentions[-1], given
                partner = mentions[0] if in_code and "resgraph diff" in line and len(mentions) > 1 else None
        current = subject if in_code or mentions else section
        if current is None or not (SPECS / f"{current}.yaml").exists():
            continue
        for figure in FIGURE.findall(line):
            yield (number, current, sets if current == subject else (), int(figure.replace(",", "")),
                   partner if current == subject else None)


def _given_params(line: str) -> tuple:
    """The params a command line sets: `--set k=v ...` or `resgraph.load("specs/x.yaml", {"k": v})`."""
    pairs = [(key, parse_value(value)) for key, value in SET.findall(line)]
    pairs += [("--input", shape) for shape in INPUT.findall(line)]
    python = re.search(r"specs/\w+\.yaml\",\s*(?:params=)?\{([^}]*)\}", line)
    if python:
        items = re.findall(r"[\"'](\w+)[\"']:\s*([^,]+)", python.group(1))
        pairs += [(key, parse_value(value)) for key, value in items]
    return tuple(sorted(pairs))


def test_figures_quoted_with_a_spec_are_resgraphs():
    wrong, count = [], 0
    for path in DOCS:
        for number, spec, sets, figure, partner in _claims(path):
            count += 1
            if figure not in _figures(_network(spec, sets), partner and _network(partner)):
                shown = " ".join(f"--set {k}={v}" for k, v in sets)
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {figure:,} is no figure of `{spec}` {shown}".rstrip())
    assert count >= 40, f"only {count} figures were found: the scan is broken"
    assert not wrong, "\n".join(wrong)


def test_the_scan_catches_a_wrong_figure(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```\n$ resgraph summary specs/resnet18.yaml\nparams:  11,689,513\nMACs: 1,814,073,344\n```\n"
                    "## A section on `specs/resnet50.yaml`\n\nIt has 25,557,032 parameters.\n\n## Another\n\n"
                    "99,999,999 is about nothing.\n")
    claims = list(_claims(page))
    assert [(n, spec, figure) for n, spec, _, figure, _ in claims] == [
        (3, "resnet18", 11_689_513), (4, "resnet18", 1_814_073_344), (8, "resnet50", 25_557_032)]
    assert 11_689_513 not in _figures(_network("resnet18"))


def test_cli_md_lists_the_output_of_validate_for_every_spec(monkeypatch):
    """docs/cli.md shows `resgraph validate specs/*.yaml specs/blocks/*.yaml`: it must be that command's output,
    every spec included (paste the expected text below into the page after adding a spec)."""
    monkeypatch.chdir(ROOT)
    command = "resgraph validate specs/*.yaml specs/blocks/*.yaml"
    files = [p.relative_to(ROOT).as_posix() for p in sorted(SPECS.glob("*.yaml")) + sorted(SPECS.glob("blocks/*.yaml"))]
    result = CliRunner().invoke(main, ["validate", *files])
    assert result.exit_code == 0, result.stderr
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    start = text.index(f"$ {command}\n") + len(f"$ {command}\n")
    shown = text[start:text.index("```", start)]
    assert shown == result.stdout, f"docs/cli.md's listing differs from the command's output:\n{result.stdout}"


def test_gallery_has_every_spec_with_its_figures():
    """docs/gallery.md (written by docs/gallery.py): a row for every zoo model and every other spec, with the
    figures resgraph computes today, and a diagram section's figures equal too."""
    from .zoo import MODELS

    text = (ROOT / "docs" / "gallery.md").read_text(encoding="utf-8")
    rows = {m.group(1): (int(m.group(2).replace(",", "")), int(m.group(3).replace(",", "")))
            for m in re.finditer(r"^\| \[(\w+)\]\(#[\w-]+\) \| [^|]+ \| ([\d,]+) \| ([\d,]+) \|", text, re.M)}
    zoo = {m.group(1): (m.group(2), int(m.group(3).replace(",", "")), int(m.group(4).replace(",", "")))
           for m in re.finditer(r"^\| [^|]+ \| \[?(\w+)\]?(?:\(#[\w-]+\))? \| \[([\w/.]+)\]\(\.\./specs/[\w/.]+\)"
                                r"[^|]* \| ([\d,]+) \| ([\d,]+) \|", text, re.M)}
    missing = sorted(m.name for m in MODELS if m.name not in zoo)
    assert not missing, f"docs/gallery.md's zoo table has no row for {missing}: run docs/gallery.py"
    for model in MODELS:
        network = resgraph.load(model.path, params=model.params)
        assert zoo[model.name] == (model.spec, network.params, network.macs), model.name
    shown = set(rows) | {Path(spec).stem for spec, _, _ in zoo.values()}
    extended = set()   # a spec that others extend (cifar_resnet.yaml) is shown through them
    for path in SPECS.glob("*.yaml"):
        match = re.search(r"^extends:\s*(\S+)\.yaml", path.read_text(encoding="utf-8"), re.M)
        if match and path.stem in shown:
            extended.add(Path(match.group(1)).name)
    missing = sorted(p.stem for p in SPECS.glob("*.yaml") if p.stem not in shown and p.stem not in extended)
    assert not missing, f"docs/gallery.md has no row for {missing}: run docs/gallery.py (and add an entry)"
    for name, (params, macs) in rows.items():
        network = _network(name)
        assert (params, macs) == (network.params, network.macs), name
    for section in re.finditer(r"^### (\w+)\n\n.*?, ([\d,]+) nodes, ([\d,]+) parameters, ([\d,]+) MACs", text, re.M):
        network = _network(section.group(1))
        assert [int(g.replace(",", "")) for g in section.groups()[1:]] == \
            [len(network.graph), network.params, network.macs], section.group(1)


@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md", "docs/spec.md"])
def test_readme_and_docs_name_only_specs_that_exist(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    unknown = sorted({name for name in SPEC_MENTION.findall(text) if not (SPECS / f"{name}.yaml").exists()
                      and not (SPECS / "blocks" / f"{name}.yaml").exists()} - {"my_net"})
    assert not unknown, unknown


def test_errors_md_has_a_row_and_a_section_for_every_code():
    from resgraph.diagnostics import CODES

    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \[(RG\d{3})\]\(#([\w-]+)\) \| ([^|]+) \|", text, re.M)
    assert [code for code, _, _ in rows] == sorted(CODES), "docs/errors.md's table of codes: one row per code, in order"
    sections = {code: title for code, title in re.findall(r"^### (RG\d{3}): (.+)$", text, re.M)}
    for code, anchor, title in rows:
        assert sections.get(code) == CODES[code], code
        assert title.removesuffix(" (warning)").strip() == CODES[code], code
        assert anchor == re.sub(r"[^\w\- ]", "", f"{code}: {CODES[code]}".lower()).replace(" ", "-"), code
