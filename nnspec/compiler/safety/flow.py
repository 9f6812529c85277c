"""The flow the rules follow: chains of layers and residuals, and the positions exempt from some rules.

Block calls and `repeat` containers are flattened into the sequence around
them, so "the next layer" after a block call is the next item of the
enclosing sequence; a residual is one opaque step whose branch and shortcut
are chains of their own, ending at the residual's add.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from nnspec.compiler.ir import Graph, Layer, Merge, Sequence
from nnspec.compiler.safety.facts import is_activation


@dataclass(frozen=True)
class End:
    """The end of a chain: the model output (merge None) or the join of a merge (an add, a concat...)."""

    merge: Merge | None


Token = Layer | Merge | End


@dataclass
class Chain:
    tokens: list  # Layer | Merge, in order
    end: End


@dataclass
class Flow:
    root: Chain
    where: dict = field(default_factory=dict)  # id(layer) -> (chain, index)
    paths: dict = field(default_factory=dict)  # id(merge) -> a chain per branch (no tokens: the identity)
    in_repeat: set = field(default_factory=set)  # id(layer) of layers inside a `repeat` container

    def after(self, layer: Layer) -> Iterator[Token]:
        """Everything downstream of a layer on its own chain, ending with the chain's End."""
        chain, index = self.where[id(layer)]
        yield from chain.tokens[index + 1:]
        yield chain.end


def build_flow(graph: Graph) -> Flow:
    flow = Flow(Chain([], End(None)))
    _flatten(graph.root, flow, flow.root, in_repeat=False)
    return flow


def _flatten(node, flow: Flow, chain: Chain, in_repeat: bool) -> None:
    if isinstance(node, Layer):
        flow.where[id(node)] = (chain, len(chain.tokens))
        if in_repeat:
            flow.in_repeat.add(id(node))
        chain.tokens.append(node)
    elif isinstance(node, Sequence):
        for item in node.items:
            _flatten(item, flow, chain, in_repeat or node.kind == "repeat")
    else:
        chain.tokens.append(node)
        chains = []
        for branch in node.branches:
            chains.append(Chain([], End(node)))
            _flatten(branch, flow, chains[-1], in_repeat)
        flow.paths[id(node)] = chains


def exempt_positions(flow: Flow) -> dict:
    """id(layer) -> why it is exempt: the output head and the tail of each branch of an add (a residual path).

    A zero tail of an add branch leaves the other branches' sum: the zero-init residual. The branches of a
    concat or a multiply get no exemption: a constant tail there is constant channels, or a constant gate.
    """
    exempt = {}
    head = _last_holder(flow.root, passes=lambda layer: True)
    if head is not None:
        exempt[id(head)] = "the output head"
    for chains in flow.paths.values():
        merge = chains[0].end.merge
        if merge.op != "add":
            continue
        why = "the last layer of a residual path" if merge.residual else "the last layer of an `add` branch"
        for chain in chains:
            tail = _last_holder(chain, passes=lambda layer: not is_activation(layer))
            if tail is not None:
                exempt.setdefault(id(tail), why)
    return exempt


def _last_holder(chain: Chain, passes: Callable[[Layer], bool]) -> Layer | None:
    """The last tensor-holding layer of a chain, walking back through parameter-free layers that `passes`."""
    for token in reversed(chain.tokens):
        if isinstance(token, Merge):
            return None
        if token.tensors:
            return token
        if not passes(token):
            return None
    return None


@dataclass
class Context:
    flow: Flow
    exempt: dict  # id(layer) -> why

    def exemption(self, layer: Layer) -> str | None:
        return self.exempt.get(id(layer))
