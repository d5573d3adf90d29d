"""Validate a spec COUNT times in one process, with the resgraph of CHECKOUT: the probe behind the instruction
counts of docs/performance.md (issue 10's per-node cost), which the load of a shared machine does not move.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/warm_validate.py CHECKOUT SPEC COUNT

SPEC is a file or `chain` (the 10,000-node residual chain of bench/run.py). The `I refs` of COUNT = 1 and of
COUNT = 1 + N differ by N warm validations: divide by N and by the nodes. bench/warm_ratio.py runs these for two
checkouts and prints the ratio.
"""

import pathlib
import sys
import tempfile

checkout, spec, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, checkout)
import resgraph  # noqa: E402

assert resgraph.__file__.startswith(str(pathlib.Path(checkout).resolve())), resgraph.__file__
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from run import _chain_spec  # noqa: E402

with tempfile.TemporaryDirectory() as directory:
    if spec == "chain":
        spec = str(pathlib.Path(directory) / "chain.yaml")
        pathlib.Path(spec).write_text(_chain_spec(5000))
    for _ in range(count):
        resgraph.validate(spec)
