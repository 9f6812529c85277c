"""Expanding merges: `residual`, `add`, `multiply`, `concat` -> a MergeItem whose branches are item lists.

A merge's value is a list of branches (each a list of items; `[]` is the
identity), or a mapping with `branches` (a list, or branch name -> items) and
the usual item keys. `residual` keeps its own form: `branch` and `shortcut`.
"""

from __future__ import annotations

from nnspec.compiler.blocks import ITEM_KEYS
from nnspec.compiler.report import Abort
from nnspec.compiler.tree import GroupItem, MergeItem
from nnspec.names import did_you_mean, identifier_problem
from nnspec.vocabulary.merges import CONCAT_AXES, keys_of

RESIDUAL_KEYS = ("branch", "shortcut") + ITEM_KEYS


def expand_merge(ex, kind: str, body: dict, ipath: tuple, name: str, path: str, env, inherited: tuple) -> MergeItem:
    if kind == "residual":
        return _residual(ex, body, ipath, name, path, env, inherited)
    kpath = ipath + (kind,)
    allowed = keys_of(kind)
    for key in body:
        if key not in allowed:
            ex.error(kpath + (key,), "NS003", f"unknown key `{key}` in `{kind}`",
                     did_you_mean(key, allowed) or f"allowed: {', '.join(allowed)}", key=True)
            raise Abort
    if "branches" not in body:
        ex.error(ipath, "NS009", f"missing required argument `branches` of `{kind}`",
                 f"write `{kind}: [[items], [items]]` or `{kind}: {{branches: ...}}`")
        raise Abort
    axis = body.get("axis", "channels")
    if axis not in CONCAT_AXES:
        ex.error(kpath + ("axis",), "NS004", f"`axis` of concat must be one of {', '.join(CONCAT_AXES)}, got {axis!r}")
        raise Abort
    ctx = ex.container_context(body, kpath, f"{kind} {path}", inherited)
    named = _named_branches(ex, kind, body["branches"], kpath + ("branches",))
    if all(not items for _, items, _ in named):
        ex.error(kpath + ("branches",), "NS004", f"every branch of `{kind}` is empty: it would only repeat its input",
                 "give at least one branch some items")
        raise Abort
    branches = []
    for branch_name, items, where in named:
        branch_path = f"{path}.{branch_name}"
        branches.append(GroupItem("branch", branch_name, branch_path, ex.doc.span(where),
                                  ex.sequence(items, where, branch_path, env, ctx)))
    return MergeItem(kind, name, path, ipath, branches, tuple(ex.calls), axis)


def _named_branches(ex, kind: str, raw, where: tuple) -> list:
    """(name, items, document path) per branch; a list names its branches 0, 1, ..."""
    # `add: [[...], [...]]` is the branch list itself: its branches sit directly under the kind in the document
    base = where if where in ex.doc.spans else where[:-1]
    if isinstance(raw, list):
        pairs = [(str(i), items, base + (i,)) for i, items in enumerate(raw)]
    elif isinstance(raw, dict):
        pairs = []
        for branch_name, items in raw.items():
            problem = identifier_problem(branch_name) if isinstance(branch_name, str) else "a name must be text"
            if problem:
                ex.error(base + (branch_name,), "NS007", f"branch name: {problem}", key=True)
                raise Abort
            pairs.append((branch_name, items, base + (branch_name,)))
    else:
        ex.error(base, "NS004", f"the branches of `{kind}` are a list of item lists or a mapping name -> items",
                 f"e.g. `{kind}: [[], [conv2d: {{out: 8, kernel: 1}}]]`")
        raise Abort
    if len(pairs) < 2:
        ex.error(base, "NS004", f"`{kind}` needs at least two branches, got {len(pairs)}",
                 "a single branch needs no merge: write its items in place")
        raise Abort
    for _, items, at in pairs:
        if not isinstance(items, list):
            ex.error(at, "NS004", "a branch is a list of items (`[]` for the identity)")
            raise Abort
    return pairs


def _residual(ex, body, ipath, name, path, env, inherited) -> MergeItem:
    kpath = ipath + ("residual",)
    for key in body:
        if key not in RESIDUAL_KEYS:
            ex.error(kpath + (key,), "NS003", f"unknown key `{key}` in residual",
                     did_you_mean(key, RESIDUAL_KEYS) or "allowed: branch, shortcut, name, repeat, init, allow", key=True)
            raise Abort
    if "branch" not in body:
        ex.error(ipath, "NS009", "missing required argument `branch` of residual",
                 "write `residual: [items]` or `residual: {branch: [...], shortcut: [...]}`")
        raise Abort
    ctx = ex.container_context(body, kpath, f"residual {path}", inherited)
    for part in ("branch", "shortcut"):
        if part in body and not isinstance(body[part], list):
            ex.error(kpath + (part,), "NS004", f"`{part}` must be a list of items")
            raise Abort
    if not body["branch"]:
        ex.error(kpath + ("branch",), "NS004", "a residual's branch is empty: the block would compute x + x",
                 "give the branch at least one item")
        raise Abort
    # `residual: [items]` is the branch itself: its items sit directly under `residual` in the document
    branch_path = kpath + ("branch",) if kpath + ("branch",) in ex.doc.spans else kpath
    branch = GroupItem("branch", "branch", f"{path}.branch", ex.doc.span(branch_path),
                       ex.sequence(body["branch"], branch_path, f"{path}.branch", env, ctx))
    spath = kpath + ("shortcut",)
    items = ex.sequence(body["shortcut"], spath, f"{path}.shortcut", env, ctx) if body.get("shortcut") else []
    shortcut = GroupItem("branch", "shortcut", f"{path}.shortcut", ex.doc.span(spath if items else ipath), items)
    return MergeItem("add", name, path, ipath, [branch, shortcut], tuple(ex.calls), residual=True)
