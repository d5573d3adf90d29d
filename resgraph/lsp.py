"""`resgraph lsp`: the Language Server Protocol over stdio (pygls), for any LSP editor.

Every open and every change re-runs the static passes on the unsaved text (included files come
from a `FileCache`, so an unchanged include is not read again); `resgraph.editor` answers hovers,
definitions, references, completions, symbols and quick fixes from the result.
"""

from __future__ import annotations

import gc
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

import resgraph

from .diagnostics import Diagnostic, Diagnostics, Severity, Span
from .editor import SpecIndex, Symbol, Target, complete, locate, shortcut_fixes
from .expand import FileCache, _identity
from .source import SourceFile, load_source

ERRORS_DOC = "https://github.com/resgraph/resgraph/blob/main/docs/errors.md"
SOURCE = "resgraph"

_SYMBOL_KINDS = {"node": lsp.SymbolKind.Function, "call": lsp.SymbolKind.Module, "block": lsp.SymbolKind.Class,
                 "param": lsp.SymbolKind.Constant, "instance": lsp.SymbolKind.Object}
_COMPLETION_KINDS = {"op": lsp.CompletionItemKind.Function, "attribute": lsp.CompletionItemKind.Property,
                     "block": lsp.CompletionItemKind.Class, "node": lsp.CompletionItemKind.Reference,
                     "param": lsp.CompletionItemKind.Variable, "field": lsp.CompletionItemKind.Field}


def _anchor(code: str) -> str:
    """GitHub's anchor of `### RG050: shortcut shape mismatch` in docs/errors.md."""
    from .diagnostics import CODES

    title = f"{code} {CODES.get(code, '')}".lower()
    return re.sub(r"[^a-z0-9 -]", "", title).strip().replace(" ", "-")


def _utf16(line: str, column: int) -> int:
    """A 0-based code-point column as LSP's default UTF-16 offset."""
    prefix = line[:column]
    return len(prefix) + sum(1 for ch in prefix if ord(ch) > 0xFFFF)


def _codepoints(line: str, character: int) -> int:
    """LSP's UTF-16 offset as a 0-based code-point column."""
    count = 0
    for index, ch in enumerate(line):
        if count >= character:
            return index
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def _line(text: str, number: int) -> str:
    lines = text.splitlines()
    return lines[number] if 0 <= number < len(lines) else ""


def to_range(span: Span | None, text: str) -> lsp.Range:
    if span is None:
        return lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
    start_line, end_line = span.line - 1, span.end_line - 1
    start = lsp.Position(start_line, _utf16(_line(text, start_line), span.col - 1))
    end = lsp.Position(end_line, _utf16(_line(text, end_line), span.end_col - 1))
    return lsp.Range(start, end)


@dataclass
class _Document:
    uri: str
    path: str
    text: str
    index: SpecIndex | None = None       # the last analysis that got as far as a program
    source: SourceFile | None = None     # this file as last parsed (the current text, if it parses)
    version: int | None = None
    published: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()   # every file the last analysis read


class ResgraphServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("resgraph", resgraph.__version__)
        self.cache = FileCache()
        self.documents: dict[str, _Document] = {}

    # ---- analysis and diagnostics -------------------------------------------------------------

    def analyse(self, uri: str) -> None:
        document = self.documents[uri]
        for other in self.documents.values():
            self.cache.overlays[_identity(other.path)] = other.text
        enabled = gc.isenabled()
        gc.disable()   # as `resgraph.validate` does: many small objects, all alive until the end
        try:
            state = resgraph.run_passes(document.path, text=document.text, cache=self.cache)
        except Exception:   # a bug in a pass: say so in the log, keep serving the last analysis
            logging.getLogger(__name__).exception("resgraph failed on %s; please report it", document.path)
            return
        finally:
            if enabled:
                gc.enable()
        if state.program is not None:
            document.index = SpecIndex(state.program, state.graph)
            document.source = document.index.source_for(document.path) or state.program.source
        else:
            # the text is YAML but not (yet) a valid spec: positions from it, names from the last analysis
            current = load_source(document.path, Diagnostics(), document.text)
            if current is not None and isinstance(current.data, dict):
                document.source = current
        document.sources = frozenset(_identity(p) for p in state.diagnostics.sources)
        self.publish(document, state.diagnostics.items, state.diagnostics.sources, state.program)

    def publish(self, document: _Document, items: list[Diagnostic], sources: dict[str, str], program) -> None:
        here = _identity(document.path)
        by_file: dict[str, list[lsp.Diagnostic]] = {here: []}
        texts = {_identity(p): t for p, t in sources.items()}
        texts[here] = document.text
        for item in items:
            file = _identity(item.span.file) if item.span else here
            by_file.setdefault(file, []).append(self.to_lsp(item, item.span, texts.get(file, "")))
            if file != here:
                site = self._site_in(document, item, file, program)
                if site is not None:
                    shown = replace_message(item, f"in `{Path(file).name}`: ")
                    by_file[here].append(self.to_lsp(shown, site, document.text))
        uris = {document.uri if file == here else from_fs_path(file): file for file in by_file}
        # files that had diagnostics and have none now are cleared first, the document's own list
        # goes last: a client that waits for it has every other list of this analysis
        for stale in sorted(document.published - set(uris)):
            if stale not in self.documents:
                self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=stale, diagnostics=[]))
        for uri, file in sorted(uris.items(), key=lambda item: item[1] == here):
            version = document.version if uri == document.uri else None
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=by_file[file],
                                                                                version=version))
        document.published = frozenset(uris)

    def _site_in(self, document: _Document, item: Diagnostic, file: str, program) -> Span | None:
        """Where a fault in another file shows in this one: the instantiation note, else the include."""
        here = _identity(document.path)
        for note in item.notes:
            if note.span is not None and _identity(note.span.file) == here:
                return note.span
        source = document.source
        data = source.data if source is not None and isinstance(source.data, dict) else {}
        entries = [("extends",)] if isinstance(data.get("extends"), str) else []
        entries += [("include", i) for i, v in enumerate(data.get("include") or []) if isinstance(v, str)]
        for path in entries:
            value = data[path[0]] if len(path) == 1 else data["include"][path[1]]
            if _identity(str(Path(document.path).parent / value)) == file:
                return source.span(path)
        return source.span(entries[0]) if entries and source is not None else None

    def to_lsp(self, item: Diagnostic, span: Span | None, text: str) -> lsp.Diagnostic:
        message = item.message + (f"\nhelp: {item.help}" if item.help else "")
        related = []
        for note in item.notes:
            if note.span is not None:
                note_text = self._text_of(note.span.file)
                related.append(lsp.DiagnosticRelatedInformation(
                    lsp.Location(from_fs_path(_identity(note.span.file)), to_range(note.span, note_text)),
                    note.message))
        return lsp.Diagnostic(
            range=to_range(span, text), message=message, source=SOURCE, code=item.code,
            code_description=lsp.CodeDescription(href=f"{ERRORS_DOC}#{_anchor(item.code)}"),
            severity=(lsp.DiagnosticSeverity.Error if item.severity is Severity.ERROR
                      else lsp.DiagnosticSeverity.Warning),
            related_information=related or None)

    def _text_of(self, file: str) -> str:
        for document in self.documents.values():
            if _identity(document.path) == _identity(file):
                return document.text
        try:
            return Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""

    def reanalyse_dependents(self, changed: str) -> None:
        """A change in one open file re-checks the open files that read it (its includers)."""
        key = _identity(to_fs_path(changed) or changed)
        for uri, document in list(self.documents.items()):
            if uri != changed and key in document.sources:
                self.analyse(uri)

    # ---- queries ------------------------------------------------------------------------------

    def target(self, uri: str, position: lsp.Position) -> tuple[_Document, Target | None]:
        document = self.documents[uri]
        if document.source is None:
            return document, None
        line = _line(document.text, position.line)
        return document, locate(document.source, position.line + 1, _codepoints(line, position.character) + 1)


def replace_message(item: Diagnostic, prefix: str) -> Diagnostic:
    from dataclasses import replace

    return replace(item, message=prefix + item.message)


def _symbol(symbol: Symbol, text: str) -> lsp.DocumentSymbol:
    return lsp.DocumentSymbol(name=symbol.name, kind=_SYMBOL_KINDS.get(symbol.kind, lsp.SymbolKind.Variable),
                              detail=symbol.detail, range=to_range(symbol.span, text),
                              selection_range=to_range(symbol.selection, text),
                              children=[_symbol(child, text) for child in symbol.children] or None)


server = ResgraphServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: ResgraphServer, params: lsp.DidOpenTextDocumentParams) -> None:
    item = params.text_document
    ls.documents[item.uri] = _Document(item.uri, to_fs_path(item.uri) or item.uri, item.text, item.version)
    ls.analyse(item.uri)
    ls.reanalyse_dependents(item.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: ResgraphServer, params: lsp.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)
    ls.documents[uri].text, ls.documents[uri].version = document.source, params.text_document.version
    ls.analyse(uri)
    ls.reanalyse_dependents(uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: ResgraphServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.analyse(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: ResgraphServer, params: lsp.DidCloseTextDocumentParams) -> None:
    document = ls.documents.pop(params.text_document.uri, None)
    if document is not None:
        ls.cache.overlays.pop(_identity(document.path), None)
        for uri in document.published:
            if uri not in ls.documents:
                ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def hover(ls: ResgraphServer, params: lsp.HoverParams) -> lsp.Hover | None:
    document, target = ls.target(params.text_document.uri, params.position)
    if target is None or document.index is None:
        return None
    text = document.index.hover(target)
    if not text:
        return None
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text),
                     range=to_range(target.source.span(target.path, key=target.on_key), document.text))


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def definition(ls: ResgraphServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    document, target = ls.target(params.text_document.uri, params.position)
    if target is None or document.index is None:
        return None
    found = document.index.definition(target)
    if found is None:
        return None
    if isinstance(found, str):
        return lsp.Location(from_fs_path(_identity(found)), lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0)))
    return lsp.Location(from_fs_path(_identity(found.file)), to_range(found, ls._text_of(found.file)))


@server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
def references(ls: ResgraphServer, params: lsp.ReferenceParams) -> list[lsp.Location]:
    document, target = ls.target(params.text_document.uri, params.position)
    if target is None or document.index is None:
        return []
    spans = document.index.references(target)
    if params.context.include_declaration:
        declaration = document.index.definition(target)
        if isinstance(declaration, Span):
            spans = [declaration] + spans
        elif target.on_key:
            spans = [target.source.span(target.path, key=True)] + spans
    return [lsp.Location(from_fs_path(_identity(s.file)), to_range(s, ls._text_of(s.file))) for s in spans]


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                lsp.CompletionOptions(trigger_characters=[":", " ", "[", ",", "{"]))
def completion(ls: ResgraphServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    document = ls.documents[params.text_document.uri]
    line = _line(document.text, params.position.line)
    prefix = line[:_codepoints(line, params.position.character)]
    target = None
    if document.source is not None:
        # the enclosing node in the last parse: the nearest position at or above the cursor that has one
        for number in range(params.position.line + 1, 0, -1):
            column = len(prefix) + 1 if number == params.position.line + 1 else len(_line(document.text, number - 1))
            target = locate(document.source, number, max(column, 1))
            if target is not None:
                break
    items = complete(prefix, target, document.index)
    return lsp.CompletionList(is_incomplete=False, items=[
        lsp.CompletionItem(label=c.label, kind=_COMPLETION_KINDS.get(c.kind), detail=c.detail or None,
                           documentation=lsp.MarkupContent(lsp.MarkupKind.Markdown, c.documentation)
                           if c.documentation else None, insert_text=c.insert) for c in items])


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def document_symbol(ls: ResgraphServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    document = ls.documents[params.text_document.uri]
    if document.index is None or document.source is None:
        return []
    return [_symbol(s, document.text) for s in document.index.symbols(document.source)]


@server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
def code_action(ls: ResgraphServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    document = ls.documents.get(params.text_document.uri)
    if document is None:
        return []
    actions = []
    for diagnostic in params.context.diagnostics:
        if diagnostic.source != SOURCE or not isinstance(diagnostic.code, str):
            continue
        for value in shortcut_fixes(diagnostic.code, diagnostic.message):
            edit = _shortcut_edit(document.text, diagnostic.range, value)
            if edit is None:
                continue
            actions.append(lsp.CodeAction(
                title=f"set `shortcut: {value}`", kind=lsp.CodeActionKind.QuickFix, diagnostics=[diagnostic],
                is_preferred=not actions, edit=lsp.WorkspaceEdit(changes={document.uri: [edit]})))
    return actions


def _shortcut_edit(text: str, where: lsp.Range, value: str) -> lsp.TextEdit | None:
    """Replace the `shortcut` value the diagnostic points at, or add `shortcut:` to a one-line mapping."""
    if where.start.line != where.end.line:
        return None
    line = _line(text, where.start.line)
    start, end = _codepoints(line, where.start.character), _codepoints(line, where.end.character)
    if re.search(r"shortcut:\s*$", line[:start]):
        return lsp.TextEdit(where, value)
    close = line.rfind("}", start, end + 1)
    if line[start:start + 1] == "{" and close > start:
        position = lsp.Position(where.start.line, _utf16(line, close))
        return lsp.TextEdit(lsp.Range(position, position), f", shortcut: {value}")
    return None


def serve() -> None:
    logging.basicConfig(level=logging.WARNING)
    server.start_io()
