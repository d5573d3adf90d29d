"""Regenerate docs/gallery.md and its diagrams under docs/img/gallery/ from specs/.

    .venv/bin/python docs/gallery.py            # everything: about 15 minutes on 2 cores
    .venv/bin/python docs/gallery.py --no-zoo   # the page without re-measuring the zoo (keeps its table)
    .venv/bin/python docs/gallery.py --zoo gpt2,gpt2_small   # re-measure these zoo rows, keep the others

Every figure in the page is measured here. The zoo table (every model of tests/zoo/, and every
torchvision model without a spec) comes from the checks the tests run (tests/zoo/__init__.py):
the meta-device state_dict, the output parity against the reference with its measured difference, and
the MACs against FlopCounterMode. The other networks' figures come from resgraph itself (load:
parameters and MACs; render: the diagram); their "checked against" column names the test that proves them.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import resgraph

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "img" / "gallery"
ZOO_START, ZOO_END = "<!-- zoo table: docs/gallery.py -->", "<!-- end of the zoo table -->"

# spec -> (what it is, what it is checked against); the order of the page.
ENTRIES = {
    "resnet18": ("ResNet-18 (He et al. 2015)", "torchvision.models.resnet18: state_dict strict, equal outputs"),
    "resnet34": ("ResNet-34", "torchvision.models.resnet34: state_dict strict, equal outputs"),
    "resnet50": ("ResNet-50 v1.5", "torchvision.models.resnet50: state_dict strict, equal outputs; MACs = torchvision's 4.09 GFLOPS"),
    "resnet101": ("ResNet-101 v1.5", "torchvision.models.resnet101: state_dict strict, equal outputs"),
    "resnet152": ("ResNet-152 v1.5", "torchvision.models.resnet152: state_dict strict, equal outputs; MACs = torchvision's 11.51 GFLOPS"),
    "wide_resnet50_2": ("Wide ResNet-50-2 (Zagoruyko & Komodakis 2016)", "torchvision.models.wide_resnet50_2: state_dict strict, equal outputs"),
    "wide_resnet101_2": ("Wide ResNet-101-2", "torchvision.models.wide_resnet101_2: state_dict strict, equal outputs"),
    "resnext50_32x4d": ("ResNeXt-50 32x4d (Xie et al. 2017)", "torchvision.models.resnext50_32x4d: state_dict strict, equal outputs; MACs = torchvision's 4.23 GFLOPS"),
    "resnext101_32x8d": ("ResNeXt-101 32x8d", "torchvision.models.resnext101_32x8d: state_dict strict, equal outputs"),
    "resnext101_64x4d": ("ResNeXt-101 64x4d", "torchvision.models.resnext101_64x4d: state_dict strict, equal outputs"),
    "resnet50d": ("ResNet-50-D (He T. et al. 2019)", "published count 25,576,264; timm resnet50d outputs"),
    "se_resnet50": ("SE-ResNet-50, reduction 16 (Hu et al. 2018)", "published count 28,088,024; timm seresnet50 outputs"),
    "plain18": ("plain-18: ResNet-18 without shortcuts", "ResNet-18's keys minus the projections"),
    "plain34": ("plain-34", "ResNet-34's keys minus the projections"),
    "cifar_resnet20": ("CIFAR ResNet-20, option A (He et al. 2015, sec. 4.2)", "akamaster/pytorch_resnet_cifar10's keys and shapes; published count 269,722"),
    "cifar_resnet56": ("CIFAR ResNet-56, option A", "published count 853,018"),
    "cifar_plain20": ("CIFAR plain-20", "CIFAR ResNet-20's keys, no adds"),
    "cifar_plain56": ("CIFAR plain-56", "CIFAR ResNet-56's keys, no adds"),
    "preact_resnet164": ("pre-activation ResNet-164 (He et al. 2016)", "published count 1,703,258; osmr preresnet164bn outputs (checked by hand)"),
    "preact_resnet1001": ("pre-activation ResNet-1001", "published count 10,327,706; validates, compiles and runs"),
    "wrn28_10": ("WRN-28-10 (Zagoruyko & Komodakis 2016)", "published count 36,479,194; osmr wrn28_10 outputs (checked by hand)"),
    "residual_mlp": ("residual MLP, a[l+2] = g(z[l+2] + a[l])", "recomputed by hand in plain torch"),
    "transformer_encoder": ("pre-norm Transformer encoder", "torch.nn.TransformerEncoderLayer(norm_first=True): count and outputs of one layer at BERT-base sizes (d_model 768, 12 heads, feed-forward 3072) and of a 3-layer torch.nn.TransformerEncoder at d_model 64; the figures here are at the spec's defaults (d_model 512, 6 layers)"),
    "unet": ("U-Net with concat skips (Ronneberger et al. 2015)", "shapes; a skip from the wrong resolution is RG051"),
    "convnext_tiny": ("ConvNeXt-T (Liu et al. 2022)", "torchvision.models.convnext_tiny: keys and shapes; state_dict strict, equal outputs (a small configuration against torchvision's ConvNeXt class by default, full size under `pytest -m slow`)"),
    "vit_b_16": ("ViT-B/16 (Dosovitskiy et al. 2021)", "torchvision.models.vit_b_16: keys and shapes; state_dict strict, equal outputs (a small configuration against torchvision's VisionTransformer class by default, full size under `pytest -m slow`)"),
    "shufflenet_v2_x1_0": ("ShuffleNet V2 1.0x (Ma et al. 2018)", "torchvision.models.shufflenet_v2_x1_0: state_dict strict, equal outputs"),
    "regnet_y_400mf": ("RegNetY-400MF (Radosavovic et al. 2020)", "torchvision.models.regnet_y_400mf: state_dict strict, equal outputs"),
    "mobilenet_v3_large": ("MobileNetV3-Large (Howard et al. 2019)", "torchvision.models.mobilenet_v3_large: state_dict strict, equal outputs"),
    "r3d_18": ("R3D-18, 3-d convolutions over video (Tran et al. 2018)", "torchvision.models.video.r3d_18: state_dict strict, equal outputs (8 x 56 x 56 clips)"),
    "resnet1d": ("1-d residual CNN for time series, 5 classes", "a hand-written torch module: state_dict strict, equal outputs"),
    "googlenet": ("GoogLeNet with its auxiliary heads (Szegedy et al. 2014)", "torchvision.models.googlenet(aux_logits=True): state_dict strict, equal outputs in training (three heads) and eval (slow test, `pytest -m slow`)"),
    "residual_lstm": ("residual LSTM stack over token ids (Wu et al. 2016, GNMT)", "a hand-written torch module: state_dict strict, equal outputs"),
    "tiny_decoder": ("decoder-only language model: causal grouped-query attention with rotary embeddings", "a hand-written torch module (half-split and interleaved RoPE): state_dict strict, equal outputs"),
}
# Diagram depth per spec: everything for small nets, block instances as boxes for deep ones.
DEPTH = {"cifar_resnet20": None, "residual_mlp": None, "transformer_encoder": None, "unet": None,
         "resnet18": None, "cifar_plain20": None, "resnet1d": None,
         "residual_lstm": None, "tiny_decoder": None}


def _reference_names() -> list[tuple[str, str]]:
    """(family hint, name) of every model torchvision builds: classification, video, segmentation."""
    import torchvision

    models = torchvision.models
    return ([("classification", n) for n in models.list_models(module=models)]
            + [("video", n) for n in models.list_models(module=models.video)]
            + [("segmentation", n) for n in models.list_models(module=models.segmentation)])


def _measure(model) -> dict:
    """One zoo model through the tests' three checks; every failure is recorded, not raised."""
    from tests.zoo import check_meta, measure_macs, measure_parity, parity_ok

    row = {"verdict": "exact"}
    try:
        check_meta(model)
    except AssertionError as error:
        row["verdict"] = "keys differ"
        row["why"] = str(error).splitlines()[0]
    try:
        ours, theirs = measure_macs(model)
        row["ratio"] = ours / theirs if theirs else float("nan")
    except Exception as error:   # noqa: BLE001 - the page says what failed
        row["ratio_error"] = f"{type(error).__name__}: {error}".splitlines()[0]
    if row["verdict"] == "exact" and model.too_large:
        row["verdict"] = "keys exact; outputs not compared"
        row["why"] = model.too_large
    elif row["verdict"] == "exact":
        try:
            row["diffs"] = measure_parity(model)
            if not parity_ok(model, row["diffs"]):
                row["verdict"] = "outputs differ"
        except AssertionError as error:
            row["verdict"] = "outputs differ"
            row["why"] = str(error).splitlines()[0]
    gc.collect()
    return row


def _zoo_table(only: set[str] | None = None) -> list[str]:
    """The zoo table, every model measured; with `only`, just those models (and any the current page
    lacks), the other rows kept from the current page."""
    from tests.zoo import MODELS

    kept = _kept_rows() if only is not None else {}

    rows = ["| family | model | spec | parameters | MACs | MACs / FlopCounterMode | reference | verdict | max diff |",
            "|---|---|---|---|---|---|---|---|---|"]
    covered = set()
    for model in MODELS:
        if only is not None and model.name not in only and model.name in kept:
            rows.append(kept[model.name])
            covered.add(model.name)
            continue
        began = time.perf_counter()
        network = resgraph.load(model.path, params=model.params)
        row = _measure(model)
        covered.add(model.name)
        print(f"gallery: {model.name}: {row['verdict']} ({time.perf_counter() - began:.1f} s)", file=sys.stderr)
        ratio = f"{row['ratio']:.4f}" if "ratio" in row else f"failed: {row['ratio_error']}"
        if "diffs" in row:
            absolute, relative = row["diffs"]
            diff = f"{relative:.1e} relative" if model.relative else f"{absolute:.1e}"
        else:
            diff = row.get("why", "")
        spec = model.path.relative_to(ROOT / "specs").as_posix()
        given = ", ".join(f"{k}={v}" for k, v in model.params.items())
        shown = f"[{model.name}](#{model.name.replace('_', '-')})" if model.name in ENTRIES else model.name
        rows.append(f"| {model.family} | {shown} | [{spec}](../specs/{spec})" + (f" ({given})" if given else "")
                    + f" | {network.params:,} | {network.macs:,} | {ratio} | {model.reference_name}"
                    + f" | {row['verdict']} | {diff}" + (f" {model.note}" if model.note else "") + " |")
    for group, name in _reference_names():
        if name not in covered:
            rows.append(f"| ({group}) | {name} | | | | | torchvision | no spec yet | |")
    return rows


def _kept_rows() -> dict[str, str]:
    """The current page's zoo rows by model name (the second cell, a name or a `[name](#anchor)` link)."""
    rows = {}
    for line in _kept_zoo_table()[2:]:
        name = line.split("|")[2].strip()
        rows[name[1:name.index("]")] if name.startswith("[") else name] = line
    return rows


def _kept_zoo_table() -> list[str]:
    text = (ROOT / "docs" / "gallery.md").read_text(encoding="utf-8")
    return text[text.index(ZOO_START) + len(ZOO_START):text.index(ZOO_END)].strip("\n").splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-zoo", action="store_true", help="keep the zoo table of the current page")
    parser.add_argument("--zoo", metavar="NAMES", help="comma-separated zoo models to measure again (and any the "
                        "page lacks); the other rows are kept")
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if options.no_zoo:
        zoo = _kept_zoo_table()
    else:
        zoo = _zoo_table(set(options.zoo.split(",")) if options.zoo else None)
    from tests.zoo import MODELS

    in_zoo = {model.path.stem for model in MODELS}
    IMAGES.mkdir(parents=True, exist_ok=True)
    rows, sections = [], []
    for name, (what, checked) in ENTRIES.items():
        path = ROOT / "specs" / f"{name}.yaml"
        if not path.exists():
            continue
        network = resgraph.load(path)
        depth = DEPTH.get(name, 0 if len(network.graph) > 400 else 1)
        image = IMAGES / f"{name}.png"
        resgraph.render(network, image, depth=depth)
        shape = " x ".join(str(d) for d in next(iter(network.input_shapes.values())))
        if name not in in_zoo:
            rows.append(f"| [{name}](#{name.replace('_', '-')}) | {what} | {network.params:,} | {network.macs:,} | "
                        f"{checked} |")
        drawn = "every node" if depth is None else ("each stage as one box" if depth == 0 else
                                                    "each block instance as one box")
        sections.append(f"### {name}\n\n{what}. `specs/{name}.yaml`, input {shape}, {len(network.graph):,} nodes, "
                        f"{network.params:,} parameters, {network.macs:,} MACs per sample. Checked against: "
                        f"{checked}.\n\nDiagram: {drawn} (`resgraph render specs/{name}.yaml -o {name}.png"
                        + (f" --depth {depth}" if depth is not None else "") + f"`).\n\n"
                        f"![{name}](img/gallery/{name}.png)\n")
    page = ["# Gallery", "",
            "Every network in `specs/`, with its size and what proves it is the network it names.",
            "MACs are multiply-accumulates of convolutions, linear layers and attention's matrix products for",
            "one sample at the spec's input size (torchvision's definition of its GFLOPS figures). The page",
            "and its diagrams are generated by `docs/gallery.py`: nothing in it is typed by hand.", "",
            "## The zoo", "",
            "Every model of torchvision (classification, video, segmentation) and the Hugging Face and",
            "recurrent models of the zoo, each against its reference, measured by `docs/gallery.py` with the",
            "checks of `tests/test_zoo.py` (`pytest -m zoo` runs them all): *exact* means the spec's",
            "parameter count and state_dict (keys, order, shapes) equal the reference's, the reference's",
            "weights load with `strict=True`, and with norm statistics, affine weights and every",
            "constant-initialised tensor randomised the outputs in eval mode differ by at most 1e-5",
            "(1e-4 relative to the output's largest magnitude for the largest models); *max diff* is the",
            "measured difference. *MACs / FlopCounterMode* is the spec's static MAC count over",
            "`torch.utils.flop_counter.FlopCounterMode`'s FLOPs / 2 for the reference's forward (1 = equal).",
            "*no spec yet* marks a reference model the library does not hold. Parameters and MACs are those of",
            "the configuration compared: the spec's defaults, or the params shown after it (a smaller input",
            "for the default run's check, a small configuration of a language model).", "",
            ZOO_START, *zoo, ZOO_END, "",
            "## Other networks", "",
            "| spec | network | parameters | MACs | checked against |", "|---|---|---|---|---|", *rows, "",
            "## Diagrams", "", *sections]
    (ROOT / "docs" / "gallery.md").write_text("\n".join(page))


if __name__ == "__main__":
    main()
