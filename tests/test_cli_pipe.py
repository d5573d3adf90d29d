"""A closed output pipe (issue 15): `resgraph validate specs/*.yaml | head -1` stops quietly with 141, the
status a shell reports for a Unix tool killed by SIGPIPE (`yes | head -1`), not `error: [Errno 32]` and 2."""

from __future__ import annotations

import os
import subprocess
import sys

from resgraph.cli import EXIT_BROKEN_PIPE

from .conftest import ROOT, SPECS


def test_a_closed_pipe_is_quiet_and_exits_141():
    read, write = os.pipe()
    os.close(read)   # the reader is gone before the first line, as `head -1` is after its line: deterministic
    try:
        result = subprocess.run([sys.executable, "-m", "resgraph", "validate", str(SPECS / "cifar_resnet.yaml"),
                                 str(SPECS / "residual_mlp.yaml")], stdout=write, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, timeout=120)
    finally:
        os.close(write)
    assert EXIT_BROKEN_PIPE == 141
    assert (result.returncode, result.stderr) == (141, "")

