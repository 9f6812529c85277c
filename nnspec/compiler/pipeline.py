"""The pipeline up to the rules: text -> Document -> SpecData -> Graph -> diagnostics.

Lowering is a list of passes, each a function of the one before:
expand (blocks, arguments, names) -> infer shapes -> resolve initializers.
Nothing here imports a framework.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from nnspec.compiler.blocks import check_blocks, check_unused_args
from nnspec.compiler.expand import expand
from nnspec.compiler.ir import Graph
from nnspec.compiler.report import Recorder
from nnspec.compiler.resolve import resolve_inits, unused_container_defaults, unused_model_defaults
from nnspec.compiler.shapes import infer_shapes
from nnspec.compiler.syntax import parse_container_init
from nnspec.diagnostics import Diagnostic, Span
from nnspec.names import class_name, identifier_problem
from nnspec.schema.loader import Document, LoadError, decode, load_document
from nnspec.schema.top import SpecData, from_model, validate_top
from nnspec.vocabulary.layouts import Shape, input_layout, layout_problem

SUPPORTED_VERSIONS = (1,)


@dataclass
class Spec:
    """A loaded, validated and lowered spec."""

    file: str
    doc: Document
    model: SpecData
    graph: Graph
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def seed(self) -> Optional[int]:
        return self.model.seed

    @property
    def input_shape(self) -> tuple:
        return self.graph.input_shape

    @property
    def output_shape(self) -> tuple:
        return self.graph.output_shape

    @property
    def params(self) -> int:
        return self.graph.params

    def __repr__(self) -> str:
        return f"<nnspec.Spec {self.name!r} from {self.file!r}: {self.params:,} parameters>"


def analyse_text(text: str, filename: str, max_params: Optional[int] = None) -> tuple[Optional[Spec], list[Diagnostic]]:
    """Run every check-time stage; return the Spec (None when it could not be lowered) and all diagnostics."""
    try:
        doc = load_document(filename, text)
    except LoadError as exc:
        return None, [exc.diagnostic]
    return analyse_document(doc, max_params)


def analyse_bytes(raw: bytes, filename: str, max_params: Optional[int] = None) -> tuple[Optional[Spec], list[Diagnostic]]:
    try:
        text = decode(filename, raw)
    except LoadError as exc:
        return None, [exc.diagnostic]
    return analyse_text(text, filename, max_params)


def analyse_file(path: str, max_params: Optional[int] = None) -> tuple[Optional[Spec], list[Diagnostic]]:
    try:
        size = os.path.getsize(path)
        from nnspec.schema.loader import MAX_FILE_BYTES

        if size > MAX_FILE_BYTES:
            return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS005",
                                        f"file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes")]
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", "this path is a directory, not a file")]
    except FileNotFoundError:
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", "no such file (or a broken symbolic link)")]
    except PermissionError:
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", "the file cannot be read: permission denied")]
    except OSError as exc:
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", f"the file cannot be read: {exc.strerror}")]
    except ValueError:  # os refuses a path with a NUL character before asking the file system
        return None, [Diagnostic.at(Span(path, 1, 1, 1, 1), "NS001", "the path contains a NUL character; no file "
                                                                     "can have this name")]
    return analyse_bytes(raw, path, max_params)


def analyse_document(doc: Document, max_params: Optional[int] = None) -> tuple[Optional[Spec], list[Diagnostic]]:
    data = doc.data
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a scalar"
        return None, [Diagnostic.at(doc.span(()), "NS010",
                                    f"not an nnspec spec: the top level is {kind}, not a mapping",
                                    "a spec is a mapping that starts with `nnspec: 1`")]
    if "nnspec" not in data:
        return None, [Diagnostic.at(doc.span(()), "NS010", "not an nnspec spec: there is no top-level `nnspec` key",
                                    "add `nnspec: 1` as the first line")]
    version = data["nnspec"]
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_VERSIONS:
        return None, [Diagnostic.at(doc.span(("nnspec",)), "NS011",
                                    f"unsupported format version {version!r}; this nnspec reads version "
                                    + ", ".join(map(str, SUPPORTED_VERSIONS)), "write `nnspec: 1`")]
    model = validate_top(data)
    if model is None:  # not plainly well-formed: the pydantic model decides, and says what is wrong
        from pydantic import ValidationError

        from nnspec.schema.errors import pydantic_diagnostics
        from nnspec.schema.models import SpecModel

        try:
            model = from_model(SpecModel.model_validate(data))
        except ValidationError as exc:
            diags = pydantic_diagnostics(exc, data, doc, (), SpecModel.model_fields, what="the spec")
            return None, sorted(diags, key=Diagnostic.sort_key)
    recorder = Recorder(doc)
    graph = lower(doc, model, recorder)
    diags = recorder.merged()
    if graph is not None and not any(d.is_error for d in diags):
        from nnspec.compiler.budget import budget_diagnostics
        from nnspec.compiler.safety import run_rules
        from nnspec.compiler.targets import target_rules

        diags.extend(target_rules(graph, doc))
        diags.extend(budget_diagnostics(graph, doc, max_params))
        diags.extend(run_rules(graph, doc))
    diags = sorted(diags, key=Diagnostic.sort_key)
    if graph is None:
        return None, diags
    return Spec(doc.file, doc, model, graph, [d for d in diags if not d.is_error]), diags


def lower(doc: Document, spec: SpecData, out: Recorder) -> Optional[Graph]:
    """The lowering passes in order; None when the spec cannot be lowered (every reason is reported)."""
    name_problem = identifier_problem(spec.name)
    if name_problem:
        out.error(("name",), "NS007", f"model name: {name_problem}", "use a name like `my_model`")
    input_spec = spec.input_spec()
    dims = tuple(input_spec.shape)
    where = ("input",) if isinstance(spec.input, list) else ("input", "shape")
    if not 1 <= len(dims) <= 4:
        out.error(where, "NS004", f"`input` must have 1 to 4 axes (batch excluded), got {len(dims)}")
        return None
    problem = layout_problem(dims, input_spec.layout) if input_spec.layout else None
    if problem:
        out.error(("input", "layout"), "NS004", problem, "`features`: [F]; `map`: [C, *S]; `tokens`: [T, D]")
        return None
    shape = Shape(dims, input_layout(dims, input_spec.dtype, input_spec.layout))
    recursive = check_blocks(spec.blocks, out)
    model_init = parse_container_init(out, spec.init, ("init",), model=True)
    bodies = {name: [] if name in recursive else block.layers for name, block in spec.blocks.items()}
    expansion = expand(spec, bodies, out)
    if expansion.root is None:
        return None
    shaped = infer_shapes(expansion.root, shape, input_spec.dtype, out)
    used = resolve_inits(shaped.reached, model_init, out)
    check_unused_args(spec.blocks, out)
    if expansion.failed or shaped.failed:
        return None
    unused_model_defaults(model_init, used, out)
    unused_container_defaults(expansion.contexts, out)
    graph = Graph(spec.name, class_name(spec.name), shape, input_spec.dtype, spec.seed, shaped.root, doc.file,
                  {name: doc.key_span(("blocks", name)) for name in spec.blocks})
    if class_name(spec.name) in {class_name(b) for b in spec.blocks}:
        out.error(("name",), "NS106", f"the model's class name {class_name(spec.name)} equals a block's class "
                                      "name", "rename the model or the block")
    return graph
