"""Draw the pictures of docs/diagrams.md: ResNet-50 at each setting of `resgraph render`, before and after issue 12.

    .venv/bin/python docs/diagrams.py            # the "after" pictures, with this checkout's resgraph
    .venv/bin/python docs/diagrams.py --before   # also the "before" ones, from the code of commit BEFORE

"Before" runs the resgraph of commit BEFORE (the last one before the new diagrams), unpacked from git into a
temporary directory, in a subprocess; it writes DOT text, which graphviz's `dot` turns into PNG here. Pictures
taller than MAX_HEIGHT pixels are drawn at a lower resolution, said in the file name's table in the page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img" / "diagrams"
BEFORE = "a47f60c"
MAX_HEIGHT = 4000

SPEC = "specs/resnet50.yaml"
# (file stem, arguments of `resgraph render` after (None: the same as another picture), the same setting before
# (None: it did not exist))
AFTER = [
    ("default", [SPEC], [SPEC]),
    ("depth0", None, [SPEC, "--depth", "0"]),        # after: the default
    ("depth1", [SPEC, "--depth", "1"], [SPEC, "--depth", "1"]),
    ("depth_all", [SPEC, "--depth", "all"], None),   # before: every node was the default
    ("rankdir_lr", [SPEC, "--rankdir", "LR"], None),
    ("blocks", [SPEC, "--blocks"], None),
    ("invalid", ["tests/cases/bad/identity_stride2.yaml"], None),
]
DIFFS = [("diff_resnet101", ["diff", SPEC, "specs/resnet101.yaml"]),
         ("diff_plain", ["diff", "specs/resnet18.yaml", "specs/plain18.yaml"])]


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def dot_to_png(source: Path, target: Path) -> str:
    """PNG at 96 dpi, or lower where it would be taller than MAX_HEIGHT pixels; returns the dpi used."""
    subprocess.run(["dot", "-Tpng", "-o", str(target), str(source)], check=True)
    height = png_size(target)[1]
    if height <= MAX_HEIGHT:
        return "96"
    dpi = max(12, int(96 * MAX_HEIGHT / height))
    subprocess.run(["dot", "-Tpng", f"-Gdpi={dpi}", "-o", str(target), str(source)], check=True)
    return str(dpi)


def resgraph(args: list[str], pythonpath: Path, check: bool = True) -> None:
    """`python -m resgraph ARGS` with the resgraph package of `pythonpath` (run from there: `-m` puts the
    working directory first on the path), spec paths made absolute."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    args = [str(ROOT / arg) if arg.endswith(".yaml") else arg for arg in args]
    done = subprocess.run([sys.executable, "-m", "resgraph", *args], cwd=pythonpath, env=env, capture_output=True,
                          text=True)
    if check and done.returncode not in (0, 1):
        raise SystemExit(f"resgraph {' '.join(args)} failed:\n{done.stderr}")


def draw(args: list[str], stem: str, pythonpath: Path, workdir: Path) -> str:
    dot = workdir / f"{stem}.dot"
    command = list(args)
    if command and command[0] == "diff":
        command += ["-o", str(dot)]
    else:
        command = ["render", *command, "-o", str(dot)]
    resgraph(command, pythonpath)
    return dot_to_png(dot, OUT / f"{stem}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", action="store_true", help=f"also draw the pictures of commit {BEFORE}")
    args = parser.parse_args()
    if shutil.which("dot") is None:
        raise SystemExit("graphviz's `dot` is needed")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        for stem, after, _ in AFTER:
            if after is None:
                continue
            print(f"{stem}.png: {draw(after, stem, ROOT, workdir)} dpi, {png_size(OUT / f'{stem}.png')}")
        for stem, command in DIFFS:
            print(f"{stem}.png: {draw(command, stem, ROOT, workdir)} dpi, {png_size(OUT / f'{stem}.png')}")
        if args.before:
            old = workdir / "before"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "resgraph"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            for stem, _, before in AFTER:
                if before is not None:
                    name = f"before_{stem}"
                    print(f"{name}.png: {draw(before, name, old, workdir)} dpi, {png_size(OUT / f'{name}.png')}")


if __name__ == "__main__":
    main()
