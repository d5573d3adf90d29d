"""Regenerate docs/img/viewer/*.png, the pictures of the viewer and the playground in docs/diagrams.md.

    .venv/bin/python docs/viewer_screenshots.py      # needs playwright and chromium, as the browser tests do

The pictures are the browser tests' own screenshots (tests/test_viewer.py, tests/test_serve.py), taken at the
states those tests check; this runs the tests with $RESGRAPH_SCREENSHOTS pointing here instead of a temporary
directory, so a picture in the docs is always a state a test has seen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "img" / "viewer"


def main() -> int:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT.glob("*.png"):   # only what the tests take now (git keeps the previous ones)
        old.unlink()
    environment = {**os.environ, "RESGRAPH_SCREENSHOTS": str(OUTPUT), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "tests/test_viewer.py", "tests/test_serve.py"],
                          cwd=ROOT, env=environment)
    if done.returncode != 0:
        return done.returncode
    pictures = sorted(OUTPUT.glob("*.png"))
    if not pictures:
        print("no pictures: the browser tests skipped (their reason is above)", file=sys.stderr)
        return 1
    for picture in pictures:
        print(f"wrote {picture.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
