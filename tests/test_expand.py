"""Expansion: blocks, repeats, first, let, params, includes, references and names."""

from __future__ import annotations

import pytest

import resgraph

from .conftest import SPECS, spec_text

MLP = """
    resgraph: 1
    name: mlp
    input: [width]
    params: {width: 16, depth: 3}
    blocks:
      residual:
        params: {width: null, scale: 1}
        let: {hidden: width * scale}
        nodes:
          fc1: {op: linear, out: hidden}
          act: relu
          fc2: {op: linear, out: width}
          add: {op: add, inputs: [fc2, input]}
    nodes:
      body: {block: residual, repeat: depth, with: {width: width}, first: {scale: 4}}
      head: {op: linear, out: 2}
"""


def test_names_follow_nesting_and_repetition(load_text):
    graph = load_text(MLP).graph
    names = [node.name for node in graph]
    assert names[:5] == ["input", "body.0.fc1", "body.0.act", "body.0.fc2", "body.0.add"]
    assert names[-1] == "head" and "body.2.add" in names
    assert graph.nodes["body.1.fc1"].inputs == ["body.0.add"]
    assert graph.nodes["head"].inputs == ["body.2.add"]
    assert graph.nodes["body.0.add"].inputs == ["body.0.fc2", "input"]


def test_first_and_let_apply_per_repetition(load_text):
    graph = load_text(MLP).graph
    assert graph.nodes["body.0.fc1"].shape == (64,)
    assert graph.nodes["body.1.fc1"].shape == (16,)


def test_without_repeat_there_is_no_index(load_text):
    graph = load_text(MLP.replace("repeat: depth, ", "")).graph
    assert "body.fc1" in graph.nodes and graph.nodes["head"].inputs == ["body.add"]


def test_index_is_visible_inside_blocks(load_text):
    graph = load_text("""
        resgraph: 1
        input: [4]
        blocks:
          grow:
            nodes:
              fc: {op: linear, out: 4 + index}
        nodes:
          body: {block: grow, repeat: 3}
    """).graph
    assert [graph.nodes[f"body.{i}.fc"].shape for i in range(3)] == [(4,), (5,), (6,)]


def test_params_can_be_overridden(load_text):
    network = load_text(MLP, params={"depth": 1, "width": 8})
    assert "body.1.fc1" not in network.graph.nodes
    assert network.graph.nodes["body.0.fc2"].shape == (8,)
    assert network.input_shapes == {"input": (8,)}


def test_unknown_override_suggests_the_parameter(validate_text):
    (error,) = validate_text(MLP, params={"dpeth": 2})
    assert error.code == "RG033" and error.help == "did you mean `depth`?"


def test_input_dims_may_be_expressions(load_text):
    network = load_text("""
        resgraph: 1
        params: {size: 32}
        input: [3, size, size * 2]
        nodes:
          conv: {op: conv2d, out: 4, kernel: 1}
    """, params={"size": 8})
    assert network.graph.nodes["conv"].shape == (4, 8, 16)


def test_forward_references_to_a_block_call(load_text):
    graph = load_text("""
        resgraph: 1
        input: [8]
        blocks:
          unit:
            nodes:
              fc: {op: linear, out: 8}
        nodes:
          a: {op: linear, out: 8}
          total: {op: add, inputs: [a, later]}
          later: {block: unit, inputs: input}
        outputs: total
    """).graph
    assert graph.nodes["total"].inputs == ["a", "later.fc"]


def test_block_output_and_several_inputs(load_text):
    graph = load_text("""
        resgraph: 1
        input: {x: [8], y: [8]}
        blocks:
          gate:
            inputs: [value, weight]
            output: product
            nodes:
              squash: {op: sigmoid, inputs: weight}
              product: {op: mul, inputs: [value, squash]}
              unused_tail: {op: linear, out: 2, inputs: value}
        nodes:
          g: {block: gate, inputs: [x, y]}
          head: {op: linear, out: 2}
    """).graph
    assert graph.nodes["g.product"].inputs == ["x", "g.squash"]
    assert graph.nodes["head"].inputs == ["g.product"]


def test_includes_are_relative_and_loaded_once(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.yaml").write_text(spec_text("""
        resgraph: 1
        blocks:
          unit:
            nodes:
              fc: {op: linear, out: 8}
    """))
    for name in ("a", "b"):
        (tmp_path / "lib" / f"{name}.yaml").write_text(spec_text(f"""
            resgraph: 1
            include: [base.yaml]
            blocks:
              {name}_unit:
                nodes:
                  inner: {{block: unit}}
        """))
    (tmp_path / "net.yaml").write_text(spec_text("""
        resgraph: 1
        include: [lib/a.yaml, lib/b.yaml]
        input: [8]
        nodes:
          one: {block: a_unit}
          two: {block: b_unit}
    """))
    network = resgraph.load(tmp_path / "net.yaml")
    assert [n.name for n in network.graph][1:] == ["one.inner.fc", "two.inner.fc"]


def test_include_cycle_is_named(tmp_path):
    (tmp_path / "a.yaml").write_text("resgraph: 1\ninclude: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("resgraph: 1\ninclude: [a.yaml]\n")
    (error,) = resgraph.validate(tmp_path / "a.yaml")
    assert error.code == "RG031" and "`a.yaml` -> `b.yaml` -> `a.yaml`" in error.message
    assert error.span.file.endswith("b.yaml") and error.span.line == 2


def test_missing_include_points_at_the_include_line(tmp_path):
    (tmp_path / "a.yaml").write_text("resgraph: 1\ninclude: [nope.yaml]\n")
    (error,) = resgraph.validate(tmp_path / "a.yaml")
    assert error.code == "RG031" and error.span.line == 2 and "does not exist" in error.message


def test_block_defined_twice(tmp_path):
    (tmp_path / "lib.yaml").write_text("resgraph: 1\nblocks:\n  unit:\n    nodes:\n      fc: {op: linear, out: 2}\n")
    (tmp_path / "net.yaml").write_text("resgraph: 1\ninclude: [lib.yaml]\nblocks:\n  unit:\n    nodes:\n"
                                       "      fc: {op: linear, out: 2}\n")
    (error,) = resgraph.validate(tmp_path / "net.yaml")
    assert error.code == "RG042" and "`unit` is defined twice" in error.message


def test_mutual_recursion_is_found_statically(validate_text):
    (error,) = validate_text("""
        resgraph: 1
        blocks:
          a:
            nodes:
              x: {block: b}
          b:
            nodes:
              y: {block: a}
    """)
    assert error.code == "RG032" and "`a` -> `b` -> `a`" in error.message


def test_string_param_through_with(load_text, validate_text):
    text = """
        resgraph: 1
        input: [4, 8, 8]
        params: {option: pad}
        blocks:
          down:
            params: {shortcut: auto}
            nodes:
              conv: {op: conv2d, out: 8, kernel: 1, stride: 2}
              add: {op: add, inputs: [conv, input], shortcut: shortcut}
        nodes:
          d: {block: down, with: {shortcut: SHORTCUT}}
    """
    network = load_text(text.replace("SHORTCUT", "option"))
    assert network.params == 4 * 8 + 8  # the pad shortcut has no parameters
    assert load_text(text.replace("SHORTCUT", "\"'project'\"")).params == 40 + 4 * 8 + 2 * 8
    # A bare word that is no name in scope, nor close to one, is that text (as YAML reads it)
    assert load_text(text.replace("SHORTCUT", "project")).params == 40 + 4 * 8 + 2 * 8
    (error,) = validate_text(text.replace("SHORTCUT", "optoin"))   # close to the param `option`: a misspelt name
    assert error.code == "RG021" and error.help.startswith("did you mean `option`?") and "quote it" in error.help


def test_missing_required_param(validate_text):
    (error,) = validate_text("""
        resgraph: 1
        input: [8]
        blocks:
          unit:
            params: {width: null}
            nodes:
              fc: {op: linear, out: width}
        nodes:
          body: {block: unit}
    """)
    assert error.code == "RG034" and "`width`" in error.message and error.span.line == 9


def test_expression_error_inside_a_block_names_the_instance(validate_text):
    (error,) = validate_text("""
        resgraph: 1
        input: [8]
        blocks:
          unit:
            params: {width: 8}
            nodes:
              fc: {op: linear, out: width - 8}
        nodes:
          body: {block: unit, repeat: 2}
    """)
    assert error.code == "RG012" and error.span.line == 7 and "at least 1" in error.message
    assert error.notes and error.notes[0].span.line == 9


def test_first_node_of_a_multi_input_network_must_name_its_inputs(validate_text):
    (error,) = validate_text("""
        resgraph: 1
        input: {a: [8], b: [8]}
        nodes:
          fc: {op: linear, out: 8}
    """)
    assert error.code == "RG044" and "several inputs" in error.message


def test_node_named_like_an_input_is_refused(validate_text):
    (error,) = validate_text("resgraph: 1\ninput: [8]\nnodes:\n  input: {op: linear, out: 8}\n")
    assert error.code == "RG042"


def test_shortcut_module_name_clash(validate_text):
    (error,) = validate_text("""
        resgraph: 1
        input: [4]
        nodes:
          downsample: {op: linear, out: 8}
          add: {op: add, inputs: [downsample, input], shortcut: project}
    """)
    assert error.code == "RG042" and "shortcut_name" in error.help


def test_block_library_validates_but_does_not_compile(tmp_path):
    path = tmp_path / "lib.yaml"
    path.write_text("resgraph: 1\nblocks:\n  unit:\n    nodes:\n      fc: {op: linear, out: 2}\n")
    assert resgraph.validate(path) == []
    with pytest.raises(resgraph.SpecError, match="defines no network"):
        resgraph.load(path)


def test_unknown_block_suggestion(validate_text):
    (error,) = validate_text("""
        resgraph: 1
        input: [8]
        blocks:
          bottleneck:
            nodes:
              fc: {op: linear, out: 8}
        nodes:
          body: {block: botleneck}
    """)
    assert error.code == "RG030" and error.help == "did you mean `bottleneck`?"


def test_wrong_version(validate_text):
    (error,) = validate_text("resgraph: 2\n")
    assert error.code == "RG014"


FIRST_BLOCK = """
    resgraph: 1
    input: [8, 8, 8]
    blocks:
      unit:
        params: {planes: null}
        nodes:
          conv: {op: conv2d, out: planes, kernel: 3, padding: 1}
          add: {op: add, inputs: [conv, input]}
      down:
        params: {planes: null, stride: 2}
        nodes:
          conv: {op: conv2d, out: planes, kernel: 3, stride: stride, padding: 1}
          add: {op: add, inputs: [conv, input], shortcut: project}
    nodes:
      stage: {block: unit, first_block: down, repeat: 3, with: {planes: 16}}
"""


def test_first_block_opens_a_stage_with_another_block(load_text):
    network = load_text(FIRST_BLOCK)
    assert [n.name for n in network.graph][1:3] == ["stage.0.conv", "stage.0.add"]
    assert network.graph.nodes["stage.0.conv"].shape == (16, 4, 4)
    assert network.graph.nodes["stage.2.add"].shape == (16, 4, 4)
    assert [(i.name, i.block, i.index) for i in network.graph.instances.values()] == \
        [("stage.0", "down", 0), ("stage.1", "unit", 1), ("stage.2", "unit", 2)]
    # One projection (8 -> 16 channels, 1x1 + BN) in the opening block only.
    assert network.params == (8 * 9 * 16 + 16) + (8 * 16 + 32) + 2 * (16 * 9 * 16 + 16)


def test_first_block_params_are_checked_against_each_block(validate_text):
    (error,) = validate_text(FIRST_BLOCK.replace("with: {planes: 16}", "with: {planes: 16}, first: {strid: 1}"))
    assert error.code == "RG033" and "`down` has no parameter `strid`" in error.message
    (error,) = validate_text(FIRST_BLOCK.replace("with: {planes: 16}", "with: {planes: 16, stride: 1}"))
    assert error.code == "RG033" and "`unit` has no parameter `stride`" in error.message
    (error,) = validate_text(FIRST_BLOCK.replace("first_block: down", "first_block: dwn"))
    assert error.code == "RG030" and error.help == "did you mean `down`?"


def test_a_block_requirement_is_checked_per_instance_and_reported_once(validate_text):
    (error,) = validate_text("""
        resgraph: 1
        input: [8]
        blocks:
          unit:
            params: {width: 8}
            let: {wide: width * 2}
            require: [index < 2 or wide > 100]
            nodes:
              fc: {op: linear, out: wide}
        nodes:
          body: {block: unit, repeat: 4}
    """)
    assert error.code == "RG023" and error.span.line == 7
    assert error.message == "requirement `index < 2 or wide > 100` is false (`index` = 2, `wide` = 16)"
    assert "`body.2`" in error.notes[0].message  # the first failing instance, not every one


def test_network_requirements_see_overrides_and_survive_extends(tmp_path):
    wrn = SPECS / "wrn28_10.yaml"
    assert resgraph.validate(wrn, params={"depth": 16}) == []
    (error,) = resgraph.validate(wrn, params={"depth": 30})
    assert error.code == "RG023" and "(`depth` = 30)" in error.message and "6n + 4" in error.help
    # preact_resnet1001.yaml extends preact_resnet164.yaml, whose checks it keeps
    (error,) = resgraph.validate(SPECS / "preact_resnet1001.yaml", params={"depth": 1000})
    assert error.code == "RG023" and error.span.file.endswith("preact_resnet164.yaml")


def test_requirements_pass_quietly(load_text):
    network = load_text("""
        resgraph: 1
        params: {width: 16}
        require: [width % 8 == 0, {check: width <= 64, help: too wide}]
        input: [width]
        nodes:
          fc: {op: linear, out: width}
    """)
    assert network.warnings == [] and network.params == 16 * 16 + 16


WHEN = """
    resgraph: 1
    input: [8]
    params: {project: false, dropout: 0.0}
    blocks:
      unit:
        params: {project: false}
        nodes:
          fc: {op: linear, out: 8}
          proj: {op: linear, out: 8, inputs: input, when: project or index == 1, otherwise: input}
          add: {op: add, inputs: [fc, proj]}
          drop: {op: dropout, p: 0.5, when: false}
    nodes:
      body: {block: unit, repeat: 3, with: {project: project}}
      extra: {block: unit, when: project}
      drop: {op: dropout, p: dropout, when: dropout > 0}
      head: {op: linear, out: 2}
"""


def test_when_leaves_nodes_out_and_readers_read_the_stand_in(load_text):
    graph = load_text(WHEN).graph
    names = {node.name for node in graph}
    assert "body.0.proj" not in names and "body.1.proj" in names and "body.2.proj" not in names
    assert graph.nodes["body.0.add"].inputs == ["body.0.fc", "input"]             # otherwise: input
    assert graph.nodes["body.1.add"].inputs == ["body.1.fc", "body.1.proj"]
    assert not any(name.startswith("extra.") or name.endswith("drop") for name in names)
    # a left-out last node stands for its input, so the block's output is `add`; `drop` reads `body`
    assert graph.nodes["head"].inputs == ["body.2.add"]


def test_when_follows_params(load_text):
    graph = load_text(WHEN, params={"project": True, "dropout": 0.1}).graph
    assert all(f"body.{i}.proj" in graph.nodes for i in range(3))
    assert graph.nodes["extra.fc"].inputs == ["body.2.add"]
    assert graph.nodes["drop"].inputs == ["extra.add"] and graph.nodes["head"].inputs == ["drop"]


def test_a_left_out_call_is_not_counted_against_the_size_limit(load_text):
    network = load_text("""
        resgraph: 1
        input: [8]
        blocks:
          unit:
            nodes:
              fc: {op: linear, out: 8}
          big:
            nodes:
              units: {block: unit, repeat: 10000, when: false}
              again: {block: unit, repeat: 10000, when: false}
              out: {op: linear, out: 8}
        nodes:
          body: {block: big, repeat: 100}
    """)
    assert len(network.graph) == 101


def test_a_block_chosen_by_a_param(load_text):
    spec = """
        resgraph: 1
        input: [8]
        params: {unit: wide}
        blocks:
          wide:
            nodes:
              fc: {op: linear, out: 32}
              out: {op: linear, out: 8}
          narrow:
            nodes:
              fc: {op: linear, out: 8}
        nodes:
          body_wide: {block: wide, when: "unit == 'wide'"}
          body_narrow: {block: narrow, when: "unit == 'narrow'"}
          head: {op: linear, out: 2}
    """
    wide = load_text(spec).graph
    assert wide.nodes["head"].inputs == ["body_wide.out"] and "body_narrow.fc" not in wide.nodes
    narrow = load_text(spec, params={"unit": "narrow"}).graph
    assert narrow.nodes["body_narrow.fc"].inputs == ["input"] and narrow.nodes["head"].inputs == ["body_narrow.fc"]


def test_shape_reads_the_shapes_of_earlier_nodes_and_inputs(load_text):
    graph = load_text("""
        resgraph: 1
        input: [3, 32, 32]
        blocks:
          squeeze:
            params: {reduction: 4}
            let: {channels: "shape(input)[0]"}
            require: [channels % reduction == 0]
            nodes:
              pool: {op: adaptive_avgpool2d, size: 1}
              fc1: {op: conv2d, out: channels // reduction, kernel: 1}
              fc2: {op: conv2d, out: "shape(pool)[0]", kernel: 1}
        nodes:
          stem: {op: conv2d, out: 16, kernel: 3, padding: 1, stride: 2}
          se: {block: squeeze, with: {reduction: "shape(stem)[-1] // 4"}}
          flat: flatten
          fc: {op: linear, out: "shape(flat)[0] * 2"}
    """).graph
    assert graph.nodes["se.fc1"].shape == (4, 1, 1)       # 16 channels, reduction 16 // 4 = 4
    assert graph.instances["se"].values["reduction"] == 4 and graph.instances["se"].values["channels"] == 16
    assert graph.nodes["se.fc2"].shape == (16, 1, 1) and graph.nodes["fc"].shape == (32,)


def test_a_dropped_network_leaves_no_cycle_for_the_collector(load_text):
    """A graph holds no reference cycle (the instances' `shape(name)` lookups hold the expander, which holds the
    graph only weakly once expansion is done): a network that is dropped is freed at once, and warm validation
    does not pay for the cyclic collector's scans of it (docs/performance.md). `shape(name)` still works in the
    instances of a network that is kept."""
    import gc

    resgraph.validate(SPECS / "resnet152.yaml")   # first use: lazy imports and caches
    gc.collect()
    gc.disable()
    try:
        network = resgraph.load(SPECS / "resnet152.yaml")
        assert network.graph.instances["layer2.0"].values.shapes("conv1") == (128, 56, 56)
        del network
        resgraph.validate(SPECS / "resnet152.yaml")
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("expression, code, message", [
    ("shape(later)[0]", "RG022", "the shape of `later` is not known here"),
    ("shape(inptu)[0]", "RG021", "`shape(inptu)`: no node or input `inptu` here"),
    ("shape(input, 1)", "RG020", "`shape(...)` takes one node or input name"),
    ("shape(input)[1]", "RG022", "index 1 is out of range for a list of 1 items"),
])
def test_shape_errors(validate_text, expression, code, message):
    (error,) = validate_text(f"""
        resgraph: 1
        input: [8]
        nodes:
          fc: {{op: linear, out: "{expression}"}}
          later: {{op: linear, out: 8, inputs: input}}
          sum: {{op: add, inputs: [fc, later]}}
    """)
    assert error.code == code and message in error.message and error.span.line == 4


def test_file_cache_reads_an_unchanged_include_once(tmp_path):
    import os

    from resgraph import run_passes
    from resgraph.expand import FileCache

    (tmp_path / "lib.yaml").write_text("resgraph: 1\nblocks:\n  unit:\n    nodes:\n      fc: {op: linear, out: 8}\n")
    main = tmp_path / "main.yaml"
    main.write_text("resgraph: 1\ninclude: [lib.yaml]\ninput: [8]\nnodes:\n  body: {block: unit}\n")
    cache = FileCache()
    for _ in range(3):
        assert run_passes(main, cache=cache).network.params == 72
    assert cache.reads == 1
    # a changed include (size and time) is read again; an unsaved buffer (overlay) is used instead of the file
    (tmp_path / "lib.yaml").write_text("resgraph: 1\nblocks:\n  unit:\n    nodes:\n      fc: {op: linear, out: 16}\n")
    os.utime(tmp_path / "lib.yaml", ns=(1, 1))
    assert run_passes(main, cache=cache).network.params == 144 and cache.reads == 2
    cache.overlays[str((tmp_path / "lib.yaml").resolve())] = "resgraph: 1\nblocks:\n  unit:\n    nodes:\n      " \
                                                              "fc: {op: linear, out: 4}\n"
    assert run_passes(main, cache=cache).network.params == 36 and cache.reads == 3
    # its diagnostics come back from the cache too
    cache.overlays[str((tmp_path / "lib.yaml").resolve())] = "resgraph: 1\nblocks: [\n"
    for _ in range(2):
        codes = [d.code for d in run_passes(main, cache=cache).diagnostics.items]
        assert codes == ["RG001"]
    assert cache.reads == 4
# ---- keys, repeat names and outputs of nodes with several outputs (issue 10, "layout") -------------------

def test_repeat_names_start_and_keys_give_module_paths(load_text):
    import torch

    network = load_text("""
        resgraph: 1
        params: {first: 1}
        input: [4]
        blocks:
          unit:
            nodes:
              fc: {op: linear, out: 4, key: mlp.0}
              scale: {op: parameter, shape: [4], batch: false, init: ones}
              mul: {op: mul, inputs: [fc, scale]}
        nodes:
          features: {block: unit, repeat: 2, start: first, names: "layer-{i}", key: body.features}
          head: {op: linear, out: 2, key: heads.head}
    """)
    assert [i.name for i in network.graph.instances.values()] == ["features.layer-1", "features.layer-2"]
    model = resgraph.compile(network)
    assert list(model.state_dict()) == [
        "body.features.layer-1.scale", "body.features.layer-1.mlp.0.weight", "body.features.layer-1.mlp.0.bias",
        "body.features.layer-2.scale", "body.features.layer-2.mlp.0.weight", "body.features.layer-2.mlp.0.bias",
        "heads.head.weight", "heads.head.bias"]
    assert model(torch.randn(3, 4)).shape == (3, 2)


def test_output_references_reach_into_block_inputs(load_text):
    import torch

    network = load_text("""
        resgraph: 1
        input: [6, 4]
        blocks:
          second_half:
            inputs: [parts]
            nodes:
              take: {op: identity, inputs: "parts:1"}
        nodes:
          parts: {op: split, sizes: [2, 4]}
          upper: {block: second_half, inputs: parts}
          first: {op: relu, inputs: "parts:0"}
          both: {op: concat, inputs: [first, upper]}
    """)
    assert network.graph.nodes["upper.parts:1"].shape == (4, 4)
    assert network.graph.nodes["both"].shape == (6, 4)
    x = torch.randn(2, 6, 4)
    assert torch.equal(resgraph.compile(network)(x), torch.cat([x[:, :2].relu(), x[:, 2:]], dim=1))


def test_buffers_are_saved_unless_not_persistent(load_text):
    import torch

    network = load_text("""
        resgraph: 1
        input: [5, 8]
        nodes:
          positions: {op: buffer, generator: sinusoidal, shape: [5, 8], key: encoder.pos}
          scratch: {op: buffer, generator: ones, shape: [5, 8], persistent: false}
          add: {op: add, inputs: [input, positions]}
          mul: {op: mul, inputs: [add, scratch]}
    """)
    model = resgraph.compile(network)
    assert list(model.state_dict()) == ["encoder.pos"] and network.params == 0
    position, i = torch.arange(5.0)[:, None], torch.arange(0, 8, 2.0)
    expected = torch.zeros(5, 8)
    angle = position / 10000 ** (i / 8)
    expected[:, 0::2], expected[:, 1::2] = torch.sin(angle), torch.cos(angle)
    assert torch.allclose(model.state_dict()["encoder.pos"], expected, atol=1e-6)
    x = torch.randn(2, 5, 8)
    assert torch.allclose(model(x), x + expected, atol=1e-6)


# ---- computed keys (issue 11, the classic CNNs: torchvision's flat Sequentials) ---------------------------

COMPUTED_KEYS = """
    resgraph: 1
    params: {layers: [1, 2], batch_norm: false}
    input: [3, 8, 8]
    blocks:
      features:
        params: {layers: null, batch_norm: false}
        let:
          k: "3 if batch_norm else 2"
          s2: k * layers[0] + 1
        nodes:
          conv1_1: {op: conv2d, out: 4, kernel: 3, padding: 1, key: "{0}"}
          bn1_1: {op: batchnorm2d, key: "{1}", when: batch_norm}
          relu1_1: {op: relu, key: "{k - 1}"}
          pool1: {op: maxpool2d, kernel: 2, key: "{k * layers[0]}"}
          conv2_1: {op: conv2d, out: 8, kernel: 3, padding: 1, key: "{s2}"}
          bn2_1: {op: batchnorm2d, key: "{s2 + 1}", when: batch_norm}
          relu2_1: {op: relu, key: "{s2 + k - 1}"}
          conv2_2: {op: conv2d, out: 8, kernel: 3, padding: 1, key: "{s2 + k}", when: "layers[1] >= 2"}
          bn2_2: {op: batchnorm2d, key: "{s2 + k + 1}", when: "batch_norm and layers[1] >= 2"}
          relu2_2: {op: relu, key: "{s2 + 2 * k - 1}", when: "layers[1] >= 2"}
    nodes:
      features: {block: features, with: {layers: layers, batch_norm: batch_norm}}
      head: {op: conv2d, out: 2, kernel: 1, key: "classifier.{len}"}
"""


@pytest.mark.parametrize("batch_norm, expected", [
    (False, ["features.0", "features.3", "features.5", "classifier.7"]),
    (True, ["features.0", "features.1", "features.4", "features.5", "features.7", "features.8", "classifier.7"]),
])
def test_computed_keys_number_a_flat_sequential_as_torch_does(load_text, batch_norm, expected):
    text = COMPUTED_KEYS.replace("params: {layers: [1, 2], batch_norm: false}",
                                 "params: {layers: [1, 2], batch_norm: false, len: 7}")
    network = load_text(text, params={"batch_norm": batch_norm})
    model = resgraph.compile(network, device="meta")
    prefixes = list(dict.fromkeys(key.rpartition(".")[0] for key in model.state_dict()))
    assert prefixes == expected
    # the layers without state are numbered too, as torch's Sequential numbers them
    assert network.graph.nodes["features.pool1"].module_name == ("3" if batch_norm else "2")
    assert network.graph.nodes["features.relu2_2"].module_name == ("9" if batch_norm else "6")


def test_a_computed_key_of_a_block_call_is_evaluated_in_the_callers_scope(load_text):
    network = load_text("""
        resgraph: 1
        params: {at: 3}
        input: [4]
        blocks:
          unit:
            nodes:
              fc: {op: linear, out: 4}
        nodes:
          first: {block: unit, key: "stages.{at}"}
          second: {block: unit, key: "stages.{at + 1}"}
    """)
    assert list(resgraph.compile(network, device="meta").state_dict()) == [
        "stages.3.fc.weight", "stages.3.fc.bias", "stages.4.fc.weight", "stages.4.fc.bias"]


def test_conditional_nodes_may_share_a_key_when_never_there_together(load_text, validate_text):
    text = """
        resgraph: 1
        params: {wide: false}
        input: [3, 8, 8]
        nodes:
          narrow: {op: conv2d, out: 4, kernel: 3, bias: false, key: features.0, when: "not wide"}
          broad: {op: conv2d, out: 16, kernel: 3, bias: false, key: features.0, when: wide, inputs: input,
                  otherwise: narrow}
          norm: {op: batchnorm2d, key: features.1}
    """
    assert validate_text(text) == [] and validate_text(text, params={"wide": True}) == []
    model = resgraph.compile(load_text(text, params={"wide": True}), device="meta")
    assert model.state_dict()["features.0.weight"].shape == (16, 3, 3, 3)
    clash = validate_text(text.replace('when: "not wide"', "when: true"), params={"wide": True})
    assert [d.code for d in clash] == ["RG086"] and "`features.0` of `broad`" in clash[0].message


@pytest.mark.parametrize("key, code, message", [
    ('"{1.5}"', "RG047", "is 1.5, not a whole number >= 0 or a name"),
    ('"{-1}"', "RG047", "is -1"),
    ('"{true}"', "RG047", "is true"),
    ('"{\'a b\'}"', "RG047", "gives `a b`, which is not a module path"),
    ('"{missing}"', "RG021", "missing"),
    ('"{}"', "RG045", "invalid key"),
])
def test_a_computed_key_that_gives_no_module_path_is_refused(validate_text, key, code, message):
    diagnostics = validate_text(f"""
        resgraph: 1
        input: [4]
        nodes:
          fc: {{op: linear, out: 4, key: {key}}}
    """)
    assert [d.code for d in diagnostics] == [code] and message in diagnostics[0].message


def test_a_block_calls_key_that_torch_reserves_is_renamed_as_a_nodes_is(load_text):
    # found by the mutant fuzz on specs/squeezenet1_0.yaml: `key: lambda` on a block call broke codegen
    network = load_text("""
        resgraph: 1
        input: [4]
        blocks:
          unit:
            nodes:
              fc: {op: linear, out: 4}
        nodes:
          first: {block: unit, key: lambda}
          second: {block: unit, key: forward}
    """)
    model = resgraph.compile(network, device="meta")
    assert [k.rpartition(".")[0] for k in model.state_dict()][::2] == ["lambda_.fc", "forward_.fc"]


def test_a_computed_key_may_not_hold_or_sit_inside_another_modules_path(validate_text):
    for first, second in (('"{\'block\'}"', "block.0"), ("block", '"block.{0}"')):
        diagnostics = validate_text(f"""
            resgraph: 1
            input: [4]
            nodes:
              a: {{op: linear, out: 4, key: {first}}}
              b: {{op: linear, out: 4, key: {second}}}
        """)
        assert [d.code for d in diagnostics] == ["RG086"], diagnostics
        assert "the module path `block.0` of `b` clashes with the module path `block` of `a`" in diagnostics[0].message
