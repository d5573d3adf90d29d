"""Pass 1 of the pipeline: YAML text -> a tree of plain values plus their source positions.

The loader uses PyYAML's safe composer only (no object construction from tags), resolves
scalars with the YAML 1.2 core schema, and rejects duplicate keys, aliases and exotic tags.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .diagnostics import Diagnostics, Note, Span

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 500_000

KeyPath = tuple  # tuple of str | int: the path pydantic puts in an error's `loc`

_STR, _INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


class _CoreResolver(yaml.resolver.Resolver):
    """YAML 1.2 core schema: `no`, `on` and `1_000` stay strings, `0777` is 777 and `1e3` a float."""


_CoreResolver.yaml_implicit_resolvers = {}
_CoreResolver.add_implicit_resolver(_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), list("~nN") + [""])
_CoreResolver.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_CoreResolver.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                    list("-+0123456789"))
_CoreResolver.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"),
)


class _PythonLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
                    _CoreResolver):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _CoreResolver.__init__(self)


if yaml.__with_libyaml__:
    # libyaml composes the node tree (with the same marks) some thirty times faster than the
    # pure-Python composer, which took 18 s on a 1.5 MB file.
    class _Loader(yaml._yaml.CParser, _CoreResolver):  # type: ignore[name-defined, misc]
        def __init__(self, stream: str) -> None:
            yaml._yaml.CParser.__init__(self, stream)
            _CoreResolver.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml
    _Loader = _PythonLoader  # type: ignore[misc]

# PyYAML's parser messages, in the words of a spec author.
_YAML_PROBLEMS = [  # (pattern in PyYAML's or libyaml's words, plain words, help)
    ("expected <block end>, but found", "the indentation is inconsistent here",
     "keys of one mapping must start in the same column; indent with spaces only"),
    ("did not find expected key", "the indentation is inconsistent here",
     "keys of one mapping must start in the same column; indent with spaces only"),
    ("mapping values are not allowed", "unexpected `:` here",
     "quote a value that contains `: `, or check the indentation of this line"),
    ("expected ',' or '}'", "this `{...}` mapping is not closed where expected",
     "close the mapping with `}` and separate its entries with `,`; quote values that contain `[`, `{` or `:`"),
    ("expected ',' or ']'", "this `[...]` list is not closed where expected",
     "close the list with `]` and separate its items with `,`"),
    ("could not find expected ':'", "a key without `:`", "write `key: value`; quote a value that spans lines"),
]


def _alias_mark(text: str) -> yaml.Mark | None:
    """Where the first alias (`*name`) is: the composer hands back the anchored node, not the alias."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                return event.start_mark
    except yaml.YAMLError:
        return None
    return None


def value_at(data: Any, path: KeyPath) -> Any:
    """The value at `path` in a loaded spec's data (mappings and lists), or None where there is none."""
    for segment in path:
        try:
            data = data[segment]
        except (KeyError, IndexError, TypeError):
            return None
    return data


@dataclass
class SourceFile:
    """One loaded YAML file: its data as plain Python values, and where each value stood."""

    path: str
    text: str
    data: Any = None
    spans: dict[KeyPath, Span] = field(default_factory=dict)
    key_spans: dict[KeyPath, Span] = field(default_factory=dict)

    def span(self, path: KeyPath, *, key: bool = False) -> Span | None:
        """The span of the value at `path`, or of the nearest parent that exists."""
        path = tuple(path)
        if key and path in self.key_spans:
            return self.key_spans[path]
        while True:
            if path in self.spans:
                return self.spans[path]
            if not path:
                return None
            path = path[:-1]


def _span(path: str, node: yaml.Node) -> Span:
    start, end = node.start_mark, node.end_mark
    return Span(path, start.line + 1, start.column + 1, end.line + 1, end.column + 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    value, tag = node.value, node.tag
    if tag == _STR or (tag == "!" and node.style):
        return value
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return value.lower() == "true"
    if tag == _INT:
        return _integer(value, node)
    if tag == _FLOAT:
        lowered = value.lower()
        if lowered.endswith(".inf"):
            return -math.inf if lowered.startswith("-") else math.inf
        if lowered == ".nan":
            return math.nan
        return float(value)
    raise _Unsupported(f"the yaml tag `{tag}` is not allowed in a spec", node)


# Integers in specs are bounded as expression values are (|n| <= 2**62, see expr.MAX_INT), however they are
# written; the digits are counted before converting, so a two-million-digit literal costs nothing.
_INT_DIGITS = {8: 21, 10: 19, 16: 16}   # digits of 2**62 in each base


def _integer(text: str, node: yaml.Node) -> int:
    if len(text) <= 18 and text.isascii() and text.isdigit():
        return int(text)   # the common case: a plain decimal below 10**18, within the bound
    from .expr import MAX_INT

    base, digits = (8, text[2:]) if text.startswith("0o") else (16, text[2:]) if text.startswith("0x") else (10, text)
    significant = digits.lstrip("+-").lstrip("0")   # leading zeros count towards Python's 4,300-digit limit
    sign = -1 if digits.startswith("-") else 1
    value = sign * int(significant or "0", base) if len(significant) <= _INT_DIGITS[base] else None
    if value is None or abs(value) > MAX_INT:
        shown = text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(significant):,} digits)"
        raise _Unsupported(f"the number `{shown}` is too large: integers in a spec are limited to 2**62", node,
                           code="RG038", help="sizes and counts this large cannot be allocated; check the value")
    return value


class _Unsupported(Exception):
    def __init__(self, message: str, node: yaml.Node, help: str | None = None, code: str = "RG003",
                 alias: bool = False):
        super().__init__(message)
        self.message, self.node, self.help, self.code, self.alias = message, node, help, code, alias


def _describe_key(key: Any) -> str:
    return repr(key) if not isinstance(key, str) else key


class FileProblem(Exception):
    """A file named by the user or by a spec cannot be used as a spec: a diagnostic code, its message, a help."""

    def __init__(self, code: str, message: str, help: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.help = code, message, help

    def about_it(self, path: str | Path) -> str:
        """The message with the file called `it`, for a caller that has just named it."""
        prefix = f"`{path}` "
        return "it " + self.message[len(prefix):] if self.message.startswith(prefix) else self.message


_KINDS = [(stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]


def check_regular_file(path: str | Path) -> os.stat_result:
    """`stat` the path (following links) and refuse what is not a regular file of at most MAX_FILE_BYTES.

    Nothing is opened, so a FIFO, a device or a huge sparse file costs one system call. Raises FileProblem."""
    display = str(path)
    if "\0" in display:
        raise FileProblem("RG004", "the path contains a NUL character", "remove the NUL (`\\0`) from the path")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileProblem("RG004", f"file `{display}` does not exist", "check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileProblem("RG004", f"`{display}` is a loop of symbolic links",
                              "point the link at a real file") from None
        raise FileProblem("RG004", f"cannot read `{display}`: {exc.strerror or exc}") from None
    except ValueError as exc:  # e.g. a path too long for the platform
        raise FileProblem("RG004", f"cannot read `{display}`: {exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise FileProblem("RG004", f"`{display}` is a directory, not a spec file")
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
        raise FileProblem("RG007", f"`{display}` is {kind}, not a regular file",
                          "a spec is read from a regular file; save the spec to a file first")
    if info.st_size > MAX_FILE_BYTES:
        raise _too_large(display, info.st_size)
    return info


def _too_large(display: str, size: int | None) -> FileProblem:
    amount = f"is {size:,} bytes" if size is not None else "grew while it was read"
    return FileProblem("RG005", f"`{display}` {amount}; specs are limited to {MAX_FILE_BYTES:,} bytes",
                       "a spec this large is almost certainly not a network spec; use blocks and repeat")


def read_spec_bytes(path: str | Path) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES, read with a bounded read. Raises FileProblem."""
    display = str(path)
    check_regular_file(path)
    try:
        # O_NONBLOCK: should the path have become a FIFO since the `stat`, opening it must not wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileProblem("RG004", f"cannot read `{display}`: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise FileProblem("RG007", f"`{display}` is not a regular file",
                              "a spec is read from a regular file; save the spec to a file first")
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:   # bounded: a file that grows after the `stat` is cut off here
            chunk = os.read(descriptor, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise _too_large(display, None)
        return b"".join(chunks)
    except OSError as exc:
        raise FileProblem("RG004", f"cannot read `{display}`: {exc.strerror or exc}") from None
    finally:
        os.close(descriptor)


_DECLARES_SPEC = re.compile(r"""^[\s{]*["']?resgraph["']?\s*:""", re.MULTILINE)


def declares_spec(text: str) -> bool:
    """Whether a text has a `resgraph:` line, as every spec file (and block library) has."""
    return _DECLARES_SPEC.search(text) is not None


def load_source(path: str | Path, diagnostics: Diagnostics, text: str | None = None, *,
                included_at: Span | None = None) -> SourceFile | None:
    """Read and parse one YAML file; on failure record diagnostics and return None.

    `included_at`: the file is named by `include` or `extends` there. It must then declare itself a spec
    (a `resgraph:` line) before it is parsed, so that a file that is not one -- a password file, a log --
    is refused at that line in one message and its content never appears in a diagnostic (RG008)."""
    display = str(path)
    if text is None:
        try:
            raw = read_spec_bytes(path)
        except FileProblem as problem:
            span = Span(display, 1, 1, 1, 2) if problem.code == "RG005" else None
            diagnostics.error(problem.code, problem.message, span, help=problem.help)
            return None
        if b"\x00" in raw:
            diagnostics.error("RG004", f"`{display}` is a binary file, not YAML", Span(display, 1, 1, 1, 2))
            return None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            diagnostics.error("RG004", f"`{display}` is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                              Span(display, line, col, line, col + 1), help="save the file as UTF-8")
            return None
    if included_at is not None and not declares_spec(text):
        diagnostics.error("RG008", f"`{display}` is not a resgraph spec: it has no `resgraph:` line", included_at,
                          help="include and extend only resgraph spec files (they start with `resgraph: 1`); "
                               "the file's content is not shown")
        return None
    source = SourceFile(display, text)
    diagnostics.sources[display] = text
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        diagnostics.error("RG010", "the spec file is empty", Span(display, 1, 1, 1, 1),
                          help="a spec starts with `resgraph: 1`; see docs/spec.md")
        return None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = Span(display, mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        message, help_text = f"invalid YAML: {problem}", None
        for pattern, plain, hint in _YAML_PROBLEMS:
            if pattern in problem:
                message, help_text = f"invalid YAML: {plain} ({problem})", hint
                break
        lines = text.splitlines()
        if mark is not None and mark.line < len(lines) and "\t" in lines[mark.line][: mark.column + 1]:
            message = "invalid YAML: a tab character in the indentation"
            help_text = "YAML does not allow tabs for indentation; use spaces"
        notes = []
        context = exc.context_mark
        if exc.context and context is not None and mark is not None and context.line != mark.line:
            notes.append(Note(exc.context.replace("while ", "").strip() + " that starts here",
                              Span(display, context.line + 1, context.column + 1, context.line + 1,
                                   context.column + 2)))
        diagnostics.error("RG001", message, span, help=help_text, notes=notes)
        return None
    except yaml.YAMLError as exc:
        diagnostics.error("RG001", f"invalid YAML: {exc}", Span(display, 1, 1, 1, 2))
        return None
    except RecursionError:
        diagnostics.error("RG005", "the YAML is nested too deeply", Span(display, 1, 1, 1, 2))
        return None
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
        diagnostics.error("RG010", "the spec file is empty", Span(display, 1, 1, 1, 1),
                          help="a spec starts with `resgraph: 1`; see docs/spec.md")
        return None
    try:
        source.data = _Builder(source).build(node)
    except _Unsupported as exc:
        span = _span(display, exc.node)
        if exc.alias:
            mark = _alias_mark(text)
            if mark is not None:
                span = Span(display, mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2)
        diagnostics.error(exc.code, exc.message, span, help=exc.help)
        return None
    return source


class _Builder:
    """Turns a composed node tree into plain values, recording spans by key path."""

    def __init__(self, source: SourceFile) -> None:
        self.source = source
        self.seen: set[int] = set()
        self.count = 0

    def build(self, root: yaml.Node) -> Any:
        # Iterative, so that deep nesting cannot exhaust the Python stack.
        result: dict[str, Any] = {}
        stack: list[tuple[yaml.Node, KeyPath, Any, Any]] = [(root, (), result, "root")]
        while stack:
            node, path, parent, slot = stack.pop()
            self._check(node, path)
            self.source.spans[path] = _span(self.source.path, node)
            if isinstance(node, yaml.ScalarNode):
                parent[slot] = _scalar(node)
            elif isinstance(node, yaml.SequenceNode):
                items: list[Any] = [None] * len(node.value)
                parent[slot] = items
                for index in reversed(range(len(node.value))):
                    stack.append((node.value[index], path + (index,), items, index))
            elif isinstance(node, yaml.MappingNode):
                mapping: dict[Any, Any] = {}
                parent[slot] = mapping
                first_seen: dict[Any, yaml.Node] = {}
                children = []
                for key_node, value_node in node.value:
                    self._check(key_node, path)
                    if not isinstance(key_node, yaml.ScalarNode):
                        raise _Unsupported("mapping keys must be plain names", key_node)
                    if key_node.value == "<<" and not key_node.style:  # a plain `<<`, not "<<"
                        raise _Unsupported("yaml merge keys (`<<`) are not supported in specs", key_node,
                                           help="use blocks and `with:` to reuse definitions")
                    key = _scalar(key_node)
                    if not isinstance(key, str):
                        raise _Unsupported(
                            f"the key `{key_node.value}` is read as {type(key).__name__}, not a name",
                            key_node, help=f"quote it: `\"{key_node.value}\":`")
                    if key in first_seen:
                        first = first_seen[key]
                        raise _Unsupported(
                            f"duplicate key `{_describe_key(key)}` (first defined at line "
                            f"{first.start_mark.line + 1}, column {first.start_mark.column + 1})", key_node,
                            help="each name may appear once in a mapping; rename or remove one of them",
                            code="RG002")
                    first_seen[key] = key_node
                    mapping[key] = None
                    self.source.key_spans[path + (key,)] = _span(self.source.path, key_node)
                    children.append((value_node, path + (key,), mapping, key))
                stack.extend(reversed(children))
            else:  # pragma: no cover - the composer only makes the three kinds
                raise _Unsupported("unsupported YAML node", node)
        return result["root"]

    def _check(self, node: yaml.Node, path: KeyPath) -> None:
        if id(node) in self.seen:
            raise _Unsupported("this value is reused through a yaml alias; anchors and aliases are not "
                               "supported in specs", node,
                               help="use blocks, `repeat` and params to reuse definitions", alias=True)
        self.seen.add(id(node))
        self.count += 1
        if self.count > MAX_VALUES:
            raise _Unsupported(f"the spec has more than {MAX_VALUES:,} values", node, code="RG005",
                               help="a network spec is far smaller: use blocks and `repeat` instead of listing layers")
        if len(path) > MAX_DEPTH:
            raise _Unsupported(f"the spec is nested more than {MAX_DEPTH} levels deep", node, code="RG005",
                               help="specs need a few levels: blocks, nodes, attributes")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in (_MAP, _SEQ):
            raise _Unsupported(f"the yaml tag `{node.tag}` is not allowed in a spec", node,
                               help="specs are plain data: remove the tag")


_NULL_VALUE = re.compile(r"^(?:~|null|Null|NULL)$")


def parse_value(text: str) -> Any:
    """Read one value as a spec would (YAML 1.2 core schema), e.g. for `--set key=value`.

    Raises ValueError with a readable message when `text` is not a plain value.
    """
    if _NULL_VALUE.match(text.strip()) and text.strip():
        return None
    diagnostics = Diagnostics()
    source = load_source("<value>", diagnostics, text=text if text.strip() else "''")
    if source is None:
        raise ValueError(diagnostics.items[0].message if diagnostics.items else f"cannot read `{text}`")
    if isinstance(source.data, dict):
        raise ValueError(f"`{text}` is a mapping; give a number, a string, `true`/`false` or a list")
    return source.data
