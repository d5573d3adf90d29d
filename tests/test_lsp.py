"""`resgraph lsp` driven as an editor drives it: pygls's language client talks JSON-RPC over the stdio
of a `python -m resgraph lsp` subprocess; each test is one editing session."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from .conftest import CASES, ROOT, SPECS

lsp = pytest.importorskip("lsprotocol.types")
pytest.importorskip("pygls")
from pygls.lsp.client import LanguageClient  # noqa: E402
from pygls.uris import from_fs_path  # noqa: E402

BAD_CASE = CASES / "bad" / "identity_stride2.yaml"
TIMEOUT = 30


class Editor:
    """One client session: open files, wait for the diagnostics the server publishes."""

    def __init__(self) -> None:
        self.client = LanguageClient("resgraph-test", "1")
        self.diagnostics: dict[str, list] = {}
        self.published_versions: dict[str, int | None] = {}
        self.changed = asyncio.Condition()
        self.versions: dict[str, int] = {}

        @self.client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        async def published(params: lsp.PublishDiagnosticsParams) -> None:
            async with self.changed:
                self.diagnostics[params.uri] = params.diagnostics
                self.published_versions[params.uri] = params.version
                self.changed.notify_all()

    async def __aenter__(self) -> "Editor":
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        await self.client.start_io(sys.executable, "-m", "resgraph", "lsp", env=env)
        await self.client.initialize_async(lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(), root_uri=from_fs_path(str(ROOT))))
        self.client.initialized(lsp.InitializedParams())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()

    async def open(self, path: Path, text: str | None = None) -> str:
        uri = from_fs_path(str(path))
        self.versions[uri] = 1
        async with self.changed:
            self.diagnostics.pop(uri, None)
            self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(
                uri=uri, language_id="yaml", version=1, text=path.read_text() if text is None else text)))
            await asyncio.wait_for(self.changed.wait_for(lambda: uri in self.diagnostics), TIMEOUT)
        return uri

    async def change(self, uri: str, changes: list, until=lambda: True) -> None:
        """Send `changes` as the next version of `uri` and wait until the server has published the diagnostics
        of that version (and `until()` holds); what was published before is forgotten first."""
        self.versions[uri] += 1
        async with self.changed:
            self.diagnostics.clear()
            self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]), changes))
            await asyncio.wait_for(self.changed.wait_for(
                lambda: self.published_versions.get(uri) == self.versions[uri] and until()), TIMEOUT)


def _session(scenario) -> None:
    async def run() -> None:
        async with Editor() as editor:
            await scenario(editor)

    asyncio.run(asyncio.wait_for(run(), 60))


def _at(text: str, needle: str, line_hint: str | None = None, offset: int = 0) -> lsp.Position:
    for number, line in enumerate(text.splitlines()):
        if (line_hint is None or line_hint in line) and needle in line:
            return lsp.Position(number, line.index(needle) + offset)
    raise AssertionError(f"{needle!r} not in text")


def test_identity_stride2_is_reported_with_its_range_and_fixed_by_the_code_action(tmp_path):
    spec = tmp_path / "identity_stride2.yaml"
    spec.write_text(BAD_CASE.read_text())

    async def scenario(editor: Editor) -> None:
        uri = await editor.open(spec)
        (diagnostic,) = editor.diagnostics[uri]
        # the golden text output says 13:54 with `^^^^^^^^` under `identity`
        assert diagnostic.code == "RG050" and diagnostic.severity == lsp.DiagnosticSeverity.Error
        assert diagnostic.range == lsp.Range(lsp.Position(12, 53), lsp.Position(12, 61))
        assert diagnostic.code_description.href.endswith("docs/errors.md#rg050-shortcut-shape-mismatch")
        assert diagnostic.message.startswith("`layer2.add`: identity shortcut shapes differ: the branch gives "
                                             "[128, 28, 28] but the shortcut carries [64, 56, 56]\nhelp: ")
        (note,) = diagnostic.related_information
        assert note.location.range.start == lsp.Position(16, 2) and "an instance of block `basic`" in note.message

        actions = await editor.client.text_document_code_action_async(lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri), range=diagnostic.range,
            context=lsp.CodeActionContext(diagnostics=[diagnostic])))
        assert [a.title for a in actions] == ["set `shortcut: auto`", "set `shortcut: project`", "set `shortcut: pad`"]
        assert actions[0].is_preferred and list(actions[0].diagnostics) == [diagnostic]
        (edit,) = actions[0].edit.changes[uri]
        assert (edit.range, edit.new_text) == (diagnostic.range, "auto")

        # the user applies the fix: the diagnostic goes, and the add now has a projection
        lines = spec.read_text().splitlines(keepends=True)
        await editor.change(uri, [lsp.TextDocumentContentChangePartial(range=edit.range, text=edit.new_text)])
        assert list(editor.diagnostics[uri]) == []
        fixed = "".join(lines).replace("shortcut: identity", "shortcut: auto")
        hover = await editor.client.text_document_hover_async(lsp.HoverParams(
            lsp.TextDocumentIdentifier(uri), _at(fixed, "add:", "shortcut", 1)))
        # `auto` projects in layer2 only: a 1x1 conv 64 -> 128 (8,192) and its batch norm (256)
        assert "| `layer1.add` | [64, 56, 56] | 0 | 0 |" in hover.contents.value
        assert "| `layer2.add` | [128, 28, 28] | 8,448 |" in hover.contents.value

    _session(scenario)


def test_hover_definition_references_completion_and_symbols_on_resnet18():
    spec = ROOT / "specs" / "resnet18.yaml"
    text = spec.read_text()

    async def scenario(editor: Editor) -> None:
        uri = await editor.open(spec)
        assert list(editor.diagnostics[uri]) == []
        doc = lsp.TextDocumentIdentifier(uri)
        client = editor.client

        # hover on a node: op, output shape, params and MACs
        hover = await client.text_document_hover_async(lsp.HoverParams(doc, _at(text, "conv1:", None, 1)))
        value = hover.contents.value
        assert "`conv1`" in value and "[64, 112, 112]" in value and "9,408 params" in value
        assert "118,013,952 MACs" in value

        # hover on a block call: its instances and their output shapes
        hover = await client.text_document_hover_async(lsp.HoverParams(doc, _at(text, "layer3:", None, 1)))
        assert "| `layer3.0` | `basic`" in hover.contents.value and "[256, 14, 14]" in hover.contents.value

        # hover on a param: its value and where it was set
        hover = await client.text_document_hover_async(lsp.HoverParams(doc, _at(text, "layers:", None, 1)))
        assert "**param `layers`** = [2, 2, 2, 2]" in hover.contents.value and "resnet18.yaml:" in hover.contents.value

        # hover on an attribute's value: its value in each instance and where it came from
        hover = await client.text_document_hover_async(lsp.HoverParams(doc, _at(text, "num_classes}", "fc:", 1)))
        assert hover.contents.value.startswith("**`out`** of `fc`\n\n- `fc`: 1000 — `num_classes` at ")
        assert "  - num_classes = 1000: param at " in hover.contents.value

        # go to definition: a block name jumps to its definition in the included file
        found = await client.text_document_definition_async(lsp.DefinitionParams(
            doc, _at(text, "basic", "layer1", 1)))
        assert found.uri.endswith("blocks/resnet.yaml") and found.range.start.character > 0
        target = Path(found.uri.removeprefix("file://")).read_text().splitlines()[found.range.start.line]
        assert target.strip().startswith("basic:")
        # ... and an include path opens that file
        found = await client.text_document_definition_async(lsp.DefinitionParams(
            doc, _at(text, "blocks/resnet.yaml", "include", 2)))
        assert found.uri.endswith("specs/blocks/resnet.yaml")

        # completion of ops after `op:`
        items = await _complete(editor, uri, text, "  newnode: {op: ")
        labels = [i.label for i in items.items]
        assert {"conv2d", "batchnorm2d", "relu", "add"} <= set(labels)
        # ... of a conv's attributes, with their defaults
        items = await _complete(editor, uri, text, "  newnode: {op: conv2d, ")
        stride = next(i for i in items.items if i.label == "stride")
        assert stride.detail == "default: 1" and any(i.label == "out" and i.detail == "required" for i in items.items)

        symbols = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(doc))
        names = [s.name for s in symbols]
        assert "layers" in names and "conv1" in names and "layer4" in names
        layer4 = next(s for s in symbols if s.name == "layer4")
        assert [c.name for c in layer4.children] == ["layer4.0", "layer4.1"]

        # a spec that `extends` resnet18: its params hover with their origin, `extends` opens the base
        child = SPECS / "resnet34.yaml"
        child_text = child.read_text()
        child_uri = await editor.open(child)
        assert list(editor.diagnostics[child_uri]) == []
        child_doc = lsp.TextDocumentIdentifier(child_uri)
        hover = await client.text_document_hover_async(lsp.HoverParams(child_doc, _at(child_text, "layers", "params",
                                                                                       1)))
        assert hover.contents.value.startswith("**param `layers`** = [3, 4, 6, 3]")
        assert "resnet34.yaml:5" in hover.contents.value
        found = await client.text_document_definition_async(lsp.DefinitionParams(
            child_doc, _at(child_text, "resnet18.yaml", "extends", 2)))
        assert found.uri == uri

    _session(scenario)


async def _complete(editor: Editor, uri: str, text: str, typed: str) -> lsp.CompletionList:
    """Type `typed` (one or more lines) after the last node, ask for completions at its end, undo."""
    where = len(text.splitlines())
    end = lsp.Position(where + typed.count("\n"), len(typed.split("\n")[-1]))
    editor.versions[uri] += 1
    position = lsp.Position(where, 0)
    editor.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=editor.versions[uri]),
        [lsp.TextDocumentContentChangePartial(range=lsp.Range(position, position), text=typed)]))
    result = await editor.client.text_document_completion_async(lsp.CompletionParams(
        lsp.TextDocumentIdentifier(uri), end))
    editor.versions[uri] += 1
    editor.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=editor.versions[uri]),
        [lsp.TextDocumentContentChangePartial(range=lsp.Range(position, end), text="")]))
    return result


LIBRARY = """\
resgraph: 1
blocks:
  unit:
    params: {width: 16}
    nodes:
      conv: {op: conv2d, out: width, kernel: 3, padding: 1, bias: false}
      bn: batchnorm2d
      add: {op: add, inputs: [bn, input]}
"""

MAIN = """\
resgraph: 1
include: [lib.yaml]
params: {w: 32}
input: [16, 8, 8]
blocks:
  pair:
    nodes:
      first: {block: unit}
      second: {block: unit, inputs: first}
nodes:
  stem: {op: conv2d, out: 16, kernel: 1, bias: false}
  body: {block: pair}
  wide: {block: unit, with: {width: w}}
"""


def test_an_error_in_an_included_file_shows_there_and_at_the_call_and_references_cross_files(tmp_path):
    (tmp_path / "lib.yaml").write_text(LIBRARY)
    main = tmp_path / "main.yaml"
    main.write_text(MAIN)
    lib_uri = from_fs_path(str(tmp_path / "lib.yaml"))

    async def scenario(editor: Editor) -> None:
        uri = await editor.open(main)
        (in_lib,) = editor.diagnostics[lib_uri]
        assert in_lib.code == "RG050" and in_lib.range.start.line == 7   # the `add` of lib.yaml
        (at_call,) = editor.diagnostics[uri]
        assert at_call.code == "RG050" and at_call.range.start == lsp.Position(12, 2)   # `wide:` in main.yaml
        assert at_call.message.startswith("in `lib.yaml`: `wide.add`")
        doc = lsp.TextDocumentIdentifier(uri)
        client = editor.client

        refs = await client.text_document_references_async(lsp.ReferenceParams(
            text_document=doc, position=_at(MAIN, "unit", "first:", 1),
            context=lsp.ReferenceContext(include_declaration=True)))
        assert [(r.uri == lib_uri, r.range.start.line) for r in refs] == [(True, 2), (False, 7), (False, 8),
                                                                         (False, 12)]
        refs = await client.text_document_references_async(lsp.ReferenceParams(
            text_document=doc, position=_at(MAIN, "first:", None, 1),
            context=lsp.ReferenceContext(include_declaration=False)))
        assert [(r.range.start.line, r.range.start.character) for r in refs] == [(8, 36)]
        found = await client.text_document_definition_async(lsp.DefinitionParams(
            doc, _at(MAIN, "first}", "second", 1)))
        assert (found.uri, found.range.start) == (uri, lsp.Position(7, 6))

        hover = await client.text_document_hover_async(lsp.HoverParams(doc, _at(MAIN, "w:", "params", 0)))
        assert hover.contents.value.startswith("**param `w`** = 32") and "main.yaml:3" in hover.contents.value

        # completion of node names in `inputs` (those declared before) and of params in values
        items = await _complete(editor, uri, MAIN, "  extra: {op: relu, inputs: [")
        assert [i.label for i in items.items] == ["input", "stem", "body", "wide"]
        items = await _complete(editor, uri, MAIN, "  extra: {op: conv2d, out: ")
        assert [i.label for i in items.items] == ["w"]
        items = await _complete(editor, uri, MAIN, "  extra: {block: ")
        assert [i.label for i in items.items] == ["pair", "unit"]
        # a block call's fields, without those already given
        items = await _complete(editor, uri, MAIN, "  extra: {block: unit, ")
        labels = [i.label for i in items.items]
        assert "with" in labels and "repeat" in labels and "block" not in labels
        # attributes of a node written in block style, under its name
        items = await _complete(editor, uri, MAIN, "  extra:\n    op: linear\n    ")
        assert [(i.label, i.detail) for i in items.items if i.label in ("out", "bias", "op")] == [
            ("out", "required"), ("bias", "default: true")]

        await _check_output_mapping(editor, tmp_path)

        # fixing the width in main.yaml clears the diagnostics of both files
        line = MAIN.splitlines().index("params: {w: 32}")
        width = lsp.TextDocumentContentChangePartial(
            range=lsp.Range(lsp.Position(line, 12), lsp.Position(line, 14)), text="16")
        await editor.change(uri, [width], until=lambda: lib_uri in editor.diagnostics)
        assert list(editor.diagnostics[uri]) == [] and list(editor.diagnostics[lib_uri]) == []

        # the included file changes on disk and no longer parses: the next check of main.yaml reads it again
        # and shows its syntax error there and at the `include` line
        (tmp_path / "lib.yaml").write_text(LIBRARY.replace("params: {width: 16}", "params: {width: 16"))
        await editor.change(uri, [width])
        (syntax,) = editor.diagnostics[lib_uri]
        (at_include,) = editor.diagnostics[uri]
        assert syntax.code == at_include.code == "RG001" and at_include.message.startswith("in `lib.yaml`: ")
        assert at_include.range.start == lsp.Position(1, 10)   # `lib.yaml` in `include: [lib.yaml]`

    _session(scenario)


def test_the_shortcut_fix_adds_the_key_to_an_add_that_has_none():
    import resgraph
    from resgraph.lsp import _shortcut_edit, to_range

    text = BAD_CASE.read_text().replace(", shortcut: identity}", "}")
    (diagnostic,) = resgraph.validate("spec.yaml", text=text)
    assert diagnostic.code == "RG050"   # located at the add's mapping, as it has no `shortcut`
    edit = _shortcut_edit(text, to_range(diagnostic.span, text), "auto")
    line = text.splitlines()[edit.range.start.line]
    fixed = line[:edit.range.start.character] + edit.new_text + line[edit.range.end.character:]
    assert fixed.startswith("      add: {op: add, inputs: [bn2, input], shortcut: auto}")
    assert resgraph.validate("spec.yaml", text=text.replace(line, fixed)) == []


MAPPING = """\
resgraph: 1
input: [3, 16, 16]
nodes:
  conv: {op: conv2d, out: 8, kernel: 3, padding: 1}
  classifier: {op: conv2d, out: 4, kernel: 1}
  aux_classifier: {op: conv2d, inputs: conv, out: 4, kernel: 1}
outputs:
  out: classifier
  aux: aux_classifier
"""


async def _check_output_mapping(editor: Editor, tmp_path: Path) -> None:
    """A mapping `outputs`: its values go to their nodes and complete as nodes; a bad key is marked. Run inside
    another test's session (a server start costs seconds)."""
    spec = tmp_path / "heads.yaml"
    spec.write_text(MAPPING)
    uri = await editor.open(spec)
    assert list(editor.diagnostics[uri]) == []
    doc = lsp.TextDocumentIdentifier(uri)
    found = await editor.client.text_document_definition_async(lsp.DefinitionParams(
        doc, _at(MAPPING, "aux_classifier", "aux:", 1)))
    assert (found.uri, found.range.start) == (uri, lsp.Position(5, 2))
    nodes = ["input", "conv", "classifier", "aux_classifier"]
    # a node for a key, below `outputs:` and in a one-line mapping
    items = await _complete(editor, uri, MAPPING, "  extra: ")
    assert [i.label for i in items.items] == nodes
    items = await _complete(editor, uri, MAPPING, "outputs: {out: classifier, aux: ")
    assert [i.label for i in items.items] == nodes

    # a key that is not a name: RG095 on the key
    bad = MAPPING.replace("  aux: aux_classifier", "  aux-head: aux_classifier")
    bad_spec = tmp_path / "bad_heads.yaml"
    bad_spec.write_text(bad)
    bad_uri = await editor.open(bad_spec)
    (diagnostic,) = editor.diagnostics[bad_uri]
    assert diagnostic.code == "RG095" and diagnostic.range.start == lsp.Position(8, 2)
    assert diagnostic.range.end == lsp.Position(8, 10)
