"""Diagnostics: the error and warning values every pass produces, and their rendering.

A diagnostic is a value (code, severity, span, message, help); passes collect them and the
API raises `SpecError` only at its edge. Rendering follows rustc: location, caret, help.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Iterable, Sequence


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns start at 1, `end_col` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


# Every code resgraph emits, with a one-line title. docs/errors.md lists them with examples.
CODES: dict[str, str] = {
    "RG001": "yaml syntax error",
    "RG002": "duplicate key",
    "RG003": "unsupported yaml feature",
    "RG004": "file cannot be read",
    "RG005": "input too large",
    "RG006": "file outside the project",
    "RG007": "not a regular file",
    "RG008": "not a resgraph spec",
    "RG010": "missing field",
    "RG011": "unknown field",
    "RG012": "invalid value",
    "RG013": "unknown op",
    "RG014": "unsupported spec version",
    "RG020": "invalid expression",
    "RG021": "unknown name in expression",
    "RG022": "expression cannot be evaluated",
    "RG023": "requirement not met",
    "RG030": "unknown block",
    "RG031": "include error",
    "RG032": "recursive block",
    "RG033": "unknown parameter",
    "RG034": "missing parameter",
    "RG035": "limit exceeded",
    "RG036": "compile memory limit exceeded",
    "RG037": "oversized layer",
    "RG038": "number too large",
    "RG039": "name renamed in the module",
    "RG040": "unknown reference",
    "RG041": "cycle in graph",
    "RG042": "duplicate name",
    "RG043": "unused node",
    "RG044": "wrong number of inputs",
    "RG045": "invalid name",
    "RG046": "size beyond torch's limits",
    "RG047": "invalid computed key",
    "RG048": "invalid tie",
    "RG049": "tied parameters of different shapes",
    "RG050": "shortcut shape mismatch",
    "RG051": "merge shape mismatch",
    "RG052": "invalid shape for op",
    "RG053": "projection of an unchanged shape",
    "RG054": "linear layer over a spatial map",
    "RG055": "repeated block with several outputs",
    "RG056": "block output that is not a node",
    "RG060": "cannot import",
    "RG075": "output would replace an input",
    "RG076": "output is not a regular file",
    "RG077": "input shape override that does not fit",
    "RG100": "bias before batch norm",
    "RG101": "activation before a residual add",
    "RG090": "integer input to a float op",
    "RG091": "plugin cannot be loaded",
    "RG092": "plugins refused",
    "RG093": "plugin failure",
    "RG094": "output returned twice",
    "RG095": "invalid output mapping",
    "RG084": "no such output",
    "RG085": "several outputs read as one",
    "RG086": "clashing module paths",
    "RG087": "concat of a tensor without a batch",
}


# The warnings about one node that the node may silence with `allow: [CODE]` (docs/spec.md).
ALLOWABLE: dict[str, str] = {"RG037": "an oversized layer", "RG043": "a node no output uses (an auxiliary head, "
                             "a probe)", "RG053": "a projection of an unchanged shape (option C)",
                             "RG054": "a linear layer over the last dimension of a spatial map",
                             "RG100": "a bias right before batch norm (on the layer with the bias)",
                             "RG101": "an activation ending a residual branch (on the `add`)"}


@dataclass(frozen=True)
class Note:
    """A secondary location, e.g. the site that instantiated the block a fault sits in."""

    message: str
    span: Span | None


@dataclass(frozen=True)
class Edit:
    """A machine-applicable fix: replace the text of `span` with `replacement` (an editor's code action)."""

    span: Span
    replacement: str

    def to_dict(self) -> dict:
        span = self.span
        return {"file": span.file, "line": span.line, "column": span.col, "end_line": span.end_line,
                "end_column": span.end_col, "replacement": self.replacement}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None = None
    help: str | None = None
    severity: Severity = Severity.ERROR
    notes: tuple[Note, ...] = field(default_factory=tuple)
    fixes: tuple[Edit, ...] = field(default_factory=tuple)   # what `help` says, as edits (applied together)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_dict(self) -> dict:
        span = self.span
        return {
            "file": span.file if span else None,
            "line": span.line if span else None,
            "column": span.col if span else None,
            "end_line": span.end_line if span else None,
            "end_column": span.end_col if span else None,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "help": self.help,
            "notes": [
                {"message": n.message, "file": n.span.file if n.span else None,
                 "line": n.span.line if n.span else None, "column": n.span.col if n.span else None}
                for n in self.notes
            ],
            "fixes": [edit.to_dict() for edit in self.fixes],
        }


class SpecError(Exception):
    """Raised at the API edge when a spec has errors; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = sources or {}
        super().__init__(render_text(self.diagnostics, self.sources, color=False))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


class Diagnostics:
    """An ordered collection that passes append to; the API decides when to raise."""

    MAX_ERRORS = 50

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self.sources: dict[str, str] = {}
        self._seen: set[tuple] = set()

    def add(self, diagnostic: Diagnostic) -> None:
        if diagnostic.is_error and self.error_count >= self.MAX_ERRORS:
            return
        # One message per fault: a fault inside a block shows once, not once per instance.
        key = (diagnostic.code, diagnostic.severity, diagnostic.span or diagnostic.message)
        if key not in self._seen:
            self._seen.add(key)
            self.items.append(diagnostic)

    def error(self, code: str, message: str, span: Span | None = None, help: str | None = None,
              notes: Iterable[Note] = (), fixes: Iterable[Edit] = ()) -> None:
        self.add(Diagnostic(code, message, span, help, Severity.ERROR, tuple(notes), tuple(fixes)))

    def warning(self, code: str, message: str, span: Span | None = None, help: str | None = None,
                notes: Iterable[Note] = (), fixes: Iterable[Edit] = ()) -> None:
        self.add(Diagnostic(code, message, span, help, Severity.WARNING, tuple(notes), tuple(fixes)))

    def add_note(self, since: int, note: Note) -> None:
        """Add `note` to every diagnostic recorded after the first `since` (e.g. the include site of a file)."""
        for position in range(since, len(self.items)):
            item = self.items[position]
            if note not in item.notes and item.span != note.span:  # not where the diagnostic already points
                self.items[position] = replace(item, notes=item.notes + (note,))

    @property
    def error_count(self) -> int:
        return sum(1 for d in self.items if d.is_error)

    @property
    def has_errors(self) -> bool:
        return self.error_count > 0

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise SpecError(self.items, self.sources)


_RED, _YELLOW, _BLUE, _BOLD, _RESET = "\033[31m", "\033[33m", "\033[34m", "\033[1m", "\033[0m"

# Characters a terminal would act on rather than show: C0 and C1 controls (ESC starts colour and cursor
# sequences), line and paragraph separators, and the bidirectional overrides that reorder a line as shown.
_INVISIBLE = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPED = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in _INVISIBLE}
_ESCAPED[0x0A] = " "   # a message is one line
_PICTURED = {code: "\ufffd" for code in _INVISIBLE}   # one column each, so the caret below stays aligned


def terminal_text(text: str) -> str:
    """Text from a spec (names, values) as a diagnostic prints it: every character a terminal would act
    on, ESC included, written as an escape (`\\x1b`), so a spec cannot colour, move or hide the output."""
    return text.translate(_ESCAPED)


def _render_one(d: Diagnostic, sources: dict[str, str], color: bool) -> str:
    def c(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    sev_color = _RED if d.is_error else _YELLOW
    where = f"{d.span}: " if d.span else ""
    where = terminal_text(where)
    lines = [f"{c(_BOLD, where)}{c(_BOLD + sev_color, f'{d.severity.value}[{d.code}]')}: {terminal_text(d.message)}"]
    lines += _excerpt(d.span, sources, lambda s: c(_BLUE, s), lambda s: c(sev_color, s))
    for note in d.notes:
        at = terminal_text(f" at {note.span}") if note.span else ""
        lines.append(f"  {c(_BLUE, '= note')}: {terminal_text(note.message)}{at}")
    if d.help:
        lines.append(f"  {c(_BLUE, '= help')}: {terminal_text(d.help)}")
    return "\n".join(lines)


def _excerpt(span: Span | None, sources: dict[str, str], gutter, caret) -> list[str]:
    if span is None or span.file not in sources:
        return []
    text_lines = sources[span.file].splitlines()
    if not 1 <= span.line <= len(text_lines):
        return []
    source_line = text_lines[span.line - 1].replace("\t", " ").translate(_PICTURED)
    if len(source_line) > 200:
        return []
    width = len(str(span.line))
    end = span.end_col if span.end_line == span.line and span.end_col > span.col else span.col + 1
    end = min(max(end, span.col + 1), len(source_line) + 2)
    marker = " " * (span.col - 1) + "^" * (end - span.col)
    pad = " " * width
    return [
        gutter(f"{pad} |"),
        gutter(f"{span.line} |") + f" {source_line}",
        gutter(f"{pad} |") + " " + caret(marker),
    ]


def render_text(diagnostics: Sequence[Diagnostic], sources: dict[str, str], color: bool = False) -> str:
    return "\n\n".join(_render_one(d, sources, color) for d in diagnostics)


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diagnostics], indent=2)


def _offset(lines: list[str], line: int, col: int) -> int:
    return sum(len(text) for text in lines[:line - 1]) + col - 1


def text_at(text: str, span: Span) -> str:
    """The source text a span covers."""
    lines = text.splitlines(keepends=True)
    return text[_offset(lines, span.line, span.col):_offset(lines, span.end_line, span.end_col)]


def replacing(text: str, span: Span | None, old: str, new: str | None) -> tuple[Edit, ...]:
    """The edit that writes `new` for the first `old` in the text at `span` (none where there is nothing to do)."""
    if span is None or new is None:
        return ()
    written = text_at(text, span)
    return (Edit(span, written.replace(old, new, 1)),) if old in written else ()


def apply_fixes(text: str, fixes: Iterable[Edit]) -> str:
    """`text` with every edit applied (edits must not overlap; they are applied from the end)."""
    lines = text.splitlines(keepends=True)
    for edit in sorted(fixes, key=lambda e: (e.span.line, e.span.col), reverse=True):
        start = _offset(lines, edit.span.line, edit.span.col)
        end = _offset(lines, edit.span.end_line, edit.span.end_col)
        text = text[:start] + edit.replacement + text[end:]
        lines = text.splitlines(keepends=True)
    return text


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelt name, for did-you-mean help."""
    import difflib

    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    match = nearest(name, candidates)
    return f"did you mean `{match}`?" if match else None
