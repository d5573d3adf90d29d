"""The mutant fuzz of issue 14 (tests/mutant_fuzz.py): mutated valid specs end in located diagnostics or in a
module compiled on the meta device; never another exception, never a case over 5 s (big networks: 5 ms a node),
never a spec that validates but does not compile. A seeded slice runs by default; `pytest -m slow` runs 10,000."""

from __future__ import annotations

import pytest

from . import mutant_fuzz


def _check(report: mutant_fuzz.Report) -> None:
    assert report.count and not report.failures, report.failures[:5]
    assert not report.slow, report.slow[:5]
    # The mutants reach both ends: refused with diagnostics, and compiled.
    assert report.outcomes["error"] and report.outcomes["compiled"], report.outcomes


def test_mutants_give_diagnostics_or_compile():
    _check(mutant_fuzz.run(60, seed=1))


def test_mutations_are_deterministic():
    seeds = list(mutant_fuzz._seed_specs())
    import random

    first = mutant_fuzz.mutant(seeds, random.Random("7:3"))
    assert first == mutant_fuzz.mutant(seeds, random.Random("7:3"))
    assert len(seeds) >= 20


@pytest.mark.slow
def test_ten_thousand_mutants():
    _check(mutant_fuzz.run(10_000, seed=0))
