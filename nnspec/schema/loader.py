"""Safe YAML loading that keeps the position of every key and value.

The document is composed once into a node tree (with PyYAML's C parser when it
is available), checked against size, depth and alias-expansion limits, and
then converted to plain Python data by our own walk, which also records where
each value and key came from, refuses object-constructing tags and reports
duplicate keys. Plain scalars follow YAML 1.2's core schema: `1e-4` is a
float, `no` and `off` are strings, `0755` is the decimal 755.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from nnspec.diagnostics import Diagnostic, Span

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_INT_DIGITS = 4300  # Python's own limit on decimal conversions, applied to every radix alike

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Yaml12Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    yaml_implicit_resolvers: dict = {}


_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")

_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}

Path = tuple


@dataclass
class Document:
    """Plain data plus the span of every value (and of every mapping key) by path."""

    file: str
    text: str
    data: object = None
    spans: dict[Path, Span] = field(default_factory=dict)
    key_spans: dict[Path, Span] = field(default_factory=dict)

    def span(self, path: Path) -> Span:
        """The span of the value at `path`, or of its nearest located ancestor."""
        path = tuple(path)
        while path not in self.spans and path:
            path = path[:-1]
        return self.spans.get(path) or Span(self.file, 1, 1, 1, 1)

    def key_span(self, path: Path) -> Span:
        path = tuple(path)
        return self.key_spans.get(path) or self.span(path)

    def line(self, n: int) -> str:
        lines = self.text.splitlines()
        return lines[n - 1] if 0 < n <= len(lines) else ""


class LoadError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _mark_span(file: str, start, end) -> Span:
    return Span(file, start.line + 1, start.column + 1, end.line + 1, end.column + 1)


def _whole_file(file: str) -> Span:
    return Span(file, 1, 1, 1, 1)


def decode(file: str, raw: bytes) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise LoadError(Diagnostic.at(_whole_file(file), "NS005",
                                      f"file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES} bytes",
                                      "split the model into smaller specs or use blocks and `repeat`"))
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise LoadError(Diagnostic.at(Span(file, line, col, line, col + 1), "NS001",
                                      f"the file is not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}",
                                      "save the file as UTF-8")) from None
    if "\x00" in text:
        idx = text.index("\x00")
        line = text.count("\n", 0, idx) + 1
        col = idx - (text.rfind("\n", 0, idx) + 1) + 1
        raise LoadError(Diagnostic.at(Span(file, line, col, line, col + 1), "NS001",
                                      "the file contains a NUL character; YAML text cannot",
                                      "save the file as UTF-8 text"))
    return text


def _check_depth(file: str, text: str) -> None:
    """Count nesting on the event stream: PyYAML's composer recurses per level."""
    depth = 0
    for event in yaml.parse(text, Loader=_Yaml12Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise LoadError(Diagnostic.at(_mark_span(file, event.start_mark, event.end_mark), "NS005",
                                              f"nesting is deeper than {MAX_DEPTH} levels",
                                              "a spec needs only a few levels; flatten the structure"))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_expansion(file: str, root: yaml.Node) -> None:
    """Bound the size of the tree with every alias expanded (a memoised count)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, not yet sized: a child among them is an alias of an ancestor
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if not done:
            if key in open_nodes:
                continue  # reached again through a sibling's alias while open: sized when its first visit ends
            open_nodes.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in open_nodes:
                    raise LoadError(Diagnostic.at(_mark_span(file, node.start_mark, node.end_mark), "NS005",
                                                  "an alias here refers to a node that contains it: the document "
                                                  "would expand forever", "an alias may only repeat a finished "
                                                  "node; remove the alias or move the anchor"))
                if id(child) not in sizes:
                    stack.append((child, False))
            continue
        open_nodes.discard(key)
        total = 1 + sum(sizes.get(id(c), 1) for c in children)
        if total > MAX_NODES:
            raise LoadError(Diagnostic.at(_mark_span(file, node.start_mark, node.end_mark), "NS005",
                                          f"aliases expand this document to more than {MAX_NODES} nodes",
                                          "anchors and aliases may repeat small parts; use blocks for structure"))
        sizes[key] = total


class _TooLong(ValueError):
    pass


_RADIX_DIGITS = {10: 1.0, 8: 0.9031, 16: 1.2042}  # decimal digits per digit of the radix (log10 of it)


def _parse_int(text: str) -> int:
    """An integer in any radix YAML 1.2 allows, refused (before any conversion, whose cost grows with the
    square of the length) when its decimal form would be longer than MAX_INT_DIGITS digits: a hexadecimal
    or octal literal is no way around the limit of decimal ones."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    radix = 16 if body.startswith("0x") else 8 if body.startswith("0o") else 10
    if radix != 10:
        body = body[2:]
    digits = len(body.lstrip("0")) * _RADIX_DIGITS[radix]
    if digits > MAX_INT_DIGITS:
        raise _TooLong(f"about {int(digits)} decimal digits")
    return sign * int(body, radix)


def _parse_float(text: str) -> float:
    low = text.lower()
    if low.endswith(".inf"):
        return float("-inf") if low.startswith("-") else float("inf")
    if low == ".nan":
        return float("nan")
    return float(text)


class _Converter:
    def __init__(self, doc: Document):
        self.doc = doc
        self.file = doc.file

    def span(self, node: yaml.Node) -> Span:
        return _mark_span(self.file, node.start_mark, node.end_mark)

    def fail(self, node: yaml.Node, code: str, message: str, hint: str = "") -> None:
        raise LoadError(Diagnostic.at(self.span(node), code, message, hint))

    def convert(self, node: yaml.Node, path: Path):
        self.doc.spans[path] = self.span(node)
        tag = node.tag
        if tag not in _ALLOWED_TAGS:
            self.fail(node, "NS006", f"the YAML tag {_short_tag(tag)!r} is not allowed",
                      "nnspec reads plain YAML data only; remove the tag")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, tag)
        if isinstance(node, yaml.SequenceNode):
            if tag != _CORE + "seq":
                self.fail(node, "NS006", f"the tag {_short_tag(tag)!r} cannot be applied to a list")
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        if tag != _CORE + "map":
            self.fail(node, "NS006", f"the tag {_short_tag(tag)!r} cannot be applied to a mapping")
        return self.mapping(node, path)

    def scalar(self, node: yaml.ScalarNode, tag: str):
        value = node.value
        try:
            if tag == _CORE + "str":
                return value
            if tag == _CORE + "null":
                if value not in ("", "~", "null", "Null", "NULL"):
                    raise ValueError
                return None
            if tag == _CORE + "bool":
                if value.lower() not in ("true", "false"):
                    raise ValueError
                return value.lower() == "true"
            if tag == _CORE + "int":
                return _parse_int(value)
            if tag == _CORE + "float":
                return _parse_float(value)
        except _TooLong as exc:
            self.fail(node, "NS004", f"this integer is too long ({exc}); the limit is {MAX_INT_DIGITS} digits",
                      "no layer argument, shape or seed needs a number this large")
        except ValueError:
            self.fail(node, "NS004", f"{_clip(value)!r} is not a valid {_short_tag(tag)}")
        self.fail(node, "NS006", f"the tag {_short_tag(tag)!r} cannot be applied to a scalar")

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict:
        result: dict = {}
        first_seen: dict = {}
        merged: list = []
        explicit: list = []
        merge_key = None
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _CORE + "str" and key_node.value == "<<" \
                    and not key_node.style:  # plain `<<` (the C parser gives style '', the Python one None)
                if merge_key is not None:  # YAML allows one merge key; PyYAML would silently merge both
                    self.fail(key_node, "NS002", f"a second merge key `<<`; the first is on line "
                                                 f"{merge_key.start_mark.line + 1}",
                              "merge several mappings with one key and a list: `<<: [*a, *b]`")
                merge_key = key_node
                merged.extend(value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node])
            else:
                explicit.append((key_node, value_node))
        # Merged mappings first, the earliest last (it wins), then the mapping's own keys, which win over all:
        # so both the values and the recorded positions are those of the winning entries.
        for source in reversed(merged):
            if not isinstance(source, yaml.MappingNode):
                self.fail(source, "NS004", "a merge key `<<` needs a mapping or a list of mappings")
            result.update(self.mapping(source, path))
        for key_node, value_node in explicit:
            if not isinstance(key_node, yaml.ScalarNode):
                if key_node.tag not in _ALLOWED_TAGS:  # the tag is the graver problem: name it
                    self.fail(key_node, "NS006", f"the YAML tag {_short_tag(key_node.tag)!r} is not allowed",
                              "nnspec reads plain YAML data only; remove the tag")
                self.fail(key_node, "NS004", "a mapping key must be a plain scalar, not a list or mapping")
            key = self.convert(key_node, path + ("<key>",))
            self.doc.spans.pop(path + ("<key>",), None)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                self.fail(key_node, "NS004", "a mapping key must be a scalar")
            if not isinstance(key, str):
                key = _key_text(key, key_node)
            if key in first_seen:
                first = first_seen[key]
                self.fail(key_node, "NS002",
                          f"duplicate key {key!r}; first defined on line {first.start_mark.line + 1}",
                          "remove one of the two; YAML would silently keep only the last")
            first_seen[key] = key_node
            self.doc.key_spans[path + (key,)] = self.span(key_node)
            result[key] = self.convert(value_node, path + (key,))
        return result


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _key_text(key, node: yaml.ScalarNode) -> str:
    # Keys are names; a key such as `1` or `true` is kept as written.
    return node.value


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


def load_document(file: str, text: str) -> Document:
    """Parse `text` into a Document or raise LoadError with an NS00x diagnostic."""
    doc = Document(file=file, text=text)
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise LoadError(Diagnostic.at(_whole_file(file), "NS001", "the file is empty",
                                      "a spec starts with `nnspec: 1`"))
    try:
        _check_depth(file, text)
        root = yaml.compose(text, Loader=_Yaml12Loader)
    except yaml.reader.ReaderError as exc:
        pos = max(0, min(exc.position, len(text)))
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise LoadError(Diagnostic.at(Span(file, line, col, line, col + 1), "NS001",
                                      f"the file contains the control character U+{ord(char):04X}, which YAML does "
                                      "not allow", "remove it; a spec is plain text")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        lines = text.splitlines() or [""]
        if line > len(lines):  # the parser ran into the end of the file: point at its last character
            line, col = len(lines), len(lines[-1]) + 1
        problem = exc.problem or exc.context or "invalid YAML"
        if "maximum nesting depth" in problem:  # libyaml's own limit, met while scanning ahead
            raise LoadError(Diagnostic.at(Span(file, line, col, line, col + 1), "NS005",
                                          f"nesting is deeper than {MAX_DEPTH} levels",
                                          "a spec needs only a few levels; flatten the structure")) from None
        context = ""
        if exc.context and exc.problem:
            context = f" ({exc.context}"
            if exc.context_mark is not None and exc.context_mark is not mark:
                context += f" that starts at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
            context += ")"
        raise LoadError(Diagnostic.at(Span(file, line, col, line, col + 1), "NS001",
                                      f"invalid YAML: {problem}{context}",
                                      "check indentation, brackets and quotes around this position")) from None
    except yaml.YAMLError as exc:
        raise LoadError(Diagnostic.at(_whole_file(file), "NS001", f"invalid YAML: {exc}")) from None
    except RecursionError:
        raise LoadError(Diagnostic.at(_whole_file(file), "NS005", "the document is nested too deeply")) from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _CORE + "null" and root.value == ""):
        raise LoadError(Diagnostic.at(_whole_file(file), "NS001", "the file holds no YAML document",
                                      "a spec starts with `nnspec: 1`"))
    _check_expansion(file, root)
    doc.data = _Converter(doc).convert(root, ())
    return doc
