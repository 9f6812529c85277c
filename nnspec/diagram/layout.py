"""Places a view (see `view.py`) on the plane: boxes, join marks, group frames and the edges between.

Top to bottom. A sequence stacks its items; a long one (the model itself, a block, a `repeat`
container) wraps into side-by-side columns no taller than `MAX_HEIGHT`, so that a ResNet-152 is a
wide page rather than a 30,000-pixel strip. A merge puts its branches side by side between a fork
and a join. A group is a frame with a header around its items. Coordinates are integers, so the
same view always gives the same drawing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nnspec.diagram.view import Box, Merge, View

BOX_W = 210
BOX_BASE_H = 38  # kind/name line and shape/params line
INIT_LINE_H = 14
MAX_INITS = 3  # chips drawn; more are counted
GAP = 18  # between items of a sequence
COL_GAP = 44  # between wrapped columns
BRANCH_GAP = 22
FORK = 14  # from a merge's top to its branches
JOIN_W, JOIN_H = 46, 22
IDENTITY_W = 64
HEADER = 24  # a group's title bar
PAD = 10  # inside a group's frame
MARGIN = 16
HEAD_H = 40  # the title above the drawing
MAX_HEIGHT = 2400


def box_height(box: Box) -> int:
    shown = min(len(box.inits), MAX_INITS) + (1 if len(box.inits) > MAX_INITS else 0)
    return BOX_BASE_H + INIT_LINE_H * shown + (4 if shown else 0)


@dataclass
class Placed:
    kind: str  # "layer", "join", "group", "branch-label"
    x: int
    y: int
    w: int
    h: int
    item: object = None
    text: str = ""


@dataclass
class Drawing:
    width: int
    height: int
    placed: list = field(default_factory=list)
    edges: list = field(default_factory=list)  # polylines: lists of (x, y)

    def of_kind(self, kind: str) -> list:
        return [p for p in self.placed if p.kind == kind]


class _Layout:
    def __init__(self):
        self.sizes: dict[int, tuple[int, int]] = {}
        self.columns: dict[int, list] = {}  # id(item list) -> [[index, ...], ...]
        self.placed: list = []
        self.edges: list = []

    # -- measuring -------------------------------------------------------------------------
    def size(self, item) -> tuple[int, int]:
        key = id(item)
        if key not in self.sizes:
            self.sizes[key] = self._measure(item)
        return self.sizes[key]

    def _measure(self, item) -> tuple[int, int]:
        if isinstance(item, Box):
            return BOX_W, box_height(item)
        if isinstance(item, Merge):
            widths, heights = [], []
            for branch in item.branches:
                w, h = self.seq_size(branch.items, wrap=False) if branch.items else (IDENTITY_W, 0)
                widths.append(max(w, IDENTITY_W))
                heights.append(h)
            body = max(heights) if heights else 0
            return (sum(widths) + BRANCH_GAP * (len(widths) - 1),
                    FORK + GAP + body + GAP + JOIN_H)
        w, h = self.seq_size(item.items, wrap=True)
        return max(w, BOX_W) + 2 * PAD, HEADER + PAD + h + PAD

    def seq_size(self, items: list, wrap: bool) -> tuple[int, int]:
        cols = self.wrap(items, wrap)
        width = sum(max(self.size(items[i])[0] for i in col) for col in cols) + COL_GAP * (len(cols) - 1)
        height = max(self.col_height(items, col) for col in cols) if cols else 0
        return width, height

    def col_height(self, items: list, col: list) -> int:
        return sum(self.size(items[i])[1] for i in col) + GAP * (len(col) - 1)

    def wrap(self, items: list, wrap: bool) -> list:
        key = id(items)
        if key in self.columns:
            return self.columns[key]
        cols: list = []
        current: list = []
        height = 0
        for i, item in enumerate(items):
            h = self.size(item)[1]
            if current and wrap and height + GAP + h > MAX_HEIGHT:
                cols.append(current)
                current, height = [], 0
            height = h if not current else height + GAP + h
            current.append(i)
        if current:
            cols.append(current)
        self.columns[key] = cols
        return cols

    # -- placing ---------------------------------------------------------------------------
    def place(self, item, x: int, y: int) -> None:
        w, h = self.size(item)
        if isinstance(item, Box):
            self.placed.append(Placed("layer", x, y, w, h, item))
        elif isinstance(item, Merge):
            self.place_merge(item, x, y, w, h)
        else:
            self.placed.append(Placed("group", x, y, w, h, item))
            inner_w, _ = self.seq_size(item.items, wrap=True)
            self.place_seq(item.items, x + (w - inner_w) // 2, y + HEADER + PAD, wrap=True,
                           entry=(x + w // 2, y + HEADER), leave=(x + w // 2, y + h))

    def place_merge(self, merge: Merge, x: int, y: int, w: int, h: int) -> None:
        cx = x + w // 2
        join_y = y + h - JOIN_H
        self.placed.append(Placed("join", cx - JOIN_W // 2, join_y, JOIN_W, JOIN_H, merge, merge.join))
        self.edges.append([(cx, y), (cx, y + FORK)])
        bx = x
        top = y + FORK + GAP
        for branch in merge.branches:
            if branch.items:
                bw, bh = self.seq_size(branch.items, wrap=False)
            else:
                bw, bh = IDENTITY_W, 0
            bw = max(bw, IDENTITY_W)
            bcx = bx + bw // 2
            self.placed.append(Placed("branch-label", bcx + 4, y + FORK + 2, 0, 0, merge, branch.label))
            if branch.items:
                sw, _ = self.seq_size(branch.items, wrap=False)
                self.place_seq(branch.items, bx + (bw - sw) // 2, top, wrap=False,
                               entry=None, leave=None)
                self.edges.append([(cx, y + FORK), (bcx, y + FORK), (bcx, top)])
                out_y = top + bh
            else:
                out_y = y + FORK
                self.edges.append([(cx, y + FORK), (bcx, y + FORK)])
            join_mid = join_y + JOIN_H // 2
            if bcx == cx:
                self.edges.append([(bcx, out_y), (bcx, join_y)])
            else:
                edge_x = cx - JOIN_W // 2 if bcx < cx else cx + JOIN_W // 2
                self.edges.append([(bcx, out_y), (bcx, join_mid), (edge_x, join_mid)])
            bx += bw + BRANCH_GAP

    def place_seq(self, items: list, x: int, y: int, wrap: bool, entry, leave) -> None:
        """Place a sequence with its top-left at (x, y); `entry`/`leave`: where the edge into its first
        item comes from and where the edge out of its last item goes (a group's frame), or None."""
        cols = self.wrap(items, wrap)
        cx0 = x
        prev = entry
        prev_col_right = None
        for ci, col in enumerate(cols):
            col_w = max(self.size(items[i])[0] for i in col)
            iy = y
            for k, i in enumerate(col):
                w, h = self.size(items[i])
                ix = cx0 + (col_w - w) // 2
                top = (ix + w // 2, iy)
                if prev is not None:
                    if k == 0 and ci > 0:  # from the bottom of the previous column to the top of this one
                        px, py = prev
                        lane = prev_col_right + COL_GAP // 2
                        self.edges.append([(px, py), (px, py + GAP // 2), (lane, py + GAP // 2),
                                           (lane, iy - PAD // 2 - 2), (top[0], iy - PAD // 2 - 2), top])
                    elif prev[0] == top[0]:
                        self.edges.append([prev, top])
                    else:
                        mid = (prev[1] + top[1]) // 2
                        self.edges.append([prev, (prev[0], mid), (top[0], mid), top])
                self.place(items[i], ix, iy)
                prev = (ix + w // 2, iy + h)
                iy += h + GAP
            prev_col_right = cx0 + col_w
            cx0 += col_w + COL_GAP
        if leave is not None and prev is not None:
            if prev[0] == leave[0] and len(cols) == 1:
                self.edges.append([prev, leave])
            else:
                mid = leave[1] - PAD // 2
                self.edges.append([prev, (prev[0], mid), (leave[0], mid), leave])


def layout(view: View) -> Drawing:
    lay = _Layout()
    w, h = lay.seq_size(view.items, wrap=True)
    width = max(w, BOX_W) + 2 * MARGIN
    lay.place_seq(view.items, MARGIN + (width - 2 * MARGIN - w) // 2, MARGIN + HEAD_H, wrap=True,
                  entry=None, leave=None)
    return Drawing(max(width, 420), h + 2 * MARGIN + HEAD_H, lay.placed, lay.edges)


def overlaps(rects: list) -> list:
    """Pairs of (x, y, w, h) rectangles whose interiors intersect (a sweep over x)."""
    order = sorted(range(len(rects)), key=lambda i: rects[i][0])
    found = []
    active: list = []
    for i in order:
        x, y, w, h = rects[i]
        active = [j for j in active if rects[j][0] + rects[j][2] > x]
        for j in active:
            ox, oy, ow, oh = rects[j]
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                found.append((j, i))
        active.append(i)
    return found
