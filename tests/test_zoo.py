"""Every zoo model (tests/zoo/) against its reference: static parameter count and the meta-device
state_dict for every variant; output parity, and MACs against FlopCounterMode within 1%, for the smallest
variant of each family in the default run and for every variant under `pytest -m zoo` (docs/gallery.py
measures both for every variant too, into docs/gallery.md)."""

from __future__ import annotations

import pytest

from .zoo import MODELS, check_meta, measure_macs, measure_parity, parity_ok

IDS = [m.name for m in MODELS]


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_count_and_state_dict_on_meta(model):
    check_meta(model)


def _parity_marks(model):
    marks = [] if model.smallest else [pytest.mark.zoo]
    if model.too_large:
        marks.append(pytest.mark.skip(reason=f"{model.name}: {model.too_large}"))
    return marks


@pytest.mark.parametrize("model", [pytest.param(m, marks=_parity_marks(m)) for m in MODELS], ids=IDS)
def test_outputs_equal_the_reference(model):
    diffs = measure_parity(model)
    assert parity_ok(model, diffs), f"{model.name}: max abs diff {diffs[0]:.3g}, relative {diffs[1]:.3g}"


@pytest.mark.parametrize("model", [pytest.param(m, marks=() if m.smallest else pytest.mark.zoo) for m in MODELS],
                         ids=IDS)
def test_macs_equal_flop_counter(model):
    ours, theirs = measure_macs(model)
    assert abs(ours - theirs) <= 0.01 * theirs, f"{model.name}: {ours:,} MACs, FlopCounterMode {theirs:,}"


def test_every_family_has_a_smallest_variant_in_the_default_run():
    families = {m.family for m in MODELS}
    assert families == {m.family for m in MODELS if m.smallest}
