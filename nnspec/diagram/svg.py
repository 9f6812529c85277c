"""The architecture diagram as a standalone SVG: every layer box, join, group frame and edge of the
layout, the initializer chips in their family colours, the findings as coloured outlines and badges
(their full text, with `file:line`, in each box's tooltip)."""

from __future__ import annotations

from nnspec.diagram.layout import BOX_W, INIT_LINE_H, MARGIN, MAX_INITS, Drawing, layout
from nnspec.diagram.style import FAMILY_COLOURS, FONT, MONO, SEVERITY_COLOURS, clip, esc, worst
from nnspec.diagram.view import FAMILY_ORDER, Box, View, finding_text, params_text, shape_text

LINE_H = 15
LEGEND_W, LEGEND_H = 118, 14


def box_tooltip(box: Box) -> str:
    lines = [f"{box.path} ({box.kind}), line {box.line}", f"output {shape_text(box.shape)}, {params_text(box.params)}"]
    lines += [f"{i.role}: {i.text} [{i.family}] from {i.source}" for i in box.inits]
    lines += [finding_text(d) for d in box.findings]
    return "\n".join(lines)


def _layer(p, out: list) -> None:
    box: Box = p.item
    sev = worst(box.findings)
    stroke = SEVERITY_COLOURS[sev] if sev else "#5f6b7a"
    width = 2.5 if sev else 1
    cls = "layer" + (f" finding {sev}" if sev else "")
    out.append(f'<g class="{cls}" data-path="{esc(box.path)}" data-kind="{esc(box.kind)}" '
               f'data-findings="{len(box.findings)}"><title>{esc(box_tooltip(box))}</title>')
    fill = "#ffffff" if box.params else "#f4f6f8"
    out.append(f'<rect x="{p.x}" y="{p.y}" width="{p.w}" height="{p.h}" rx="5" fill="{fill}" '
               f'stroke="{stroke}" stroke-width="{width}"/>')
    out.append(f'<text x="{p.x + 8}" y="{p.y + 15}" class="t"><tspan class="k">{esc(box.kind)}</tspan> '
               f'<tspan class="nm">{esc(clip(box.name, 22))}</tspan></text>')
    out.append(f'<text x="{p.x + 8}" y="{p.y + 30}" class="s">{esc(shape_text(box.shape))} \u00b7 '
               f'{esc(params_text(box.params))}</text>')
    y = p.y + 44
    for init in box.inits[:MAX_INITS]:
        colour = FAMILY_COLOURS[init.family]
        out.append(f'<rect x="{p.x + 8}" y="{y - 8}" width="8" height="8" rx="1" fill="{colour}"/>'
                   f'<text x="{p.x + 20}" y="{y}" class="i" fill="{colour}">'
                   f'{esc(clip(f"{init.role}: {init.text}", 34))}</text>')
        y += INIT_LINE_H
    if len(box.inits) > MAX_INITS:
        out.append(f'<text x="{p.x + 20}" y="{y}" class="i">+{len(box.inits) - MAX_INITS} more</text>')
    if sev:
        codes = " ".join(sorted({d.code for d in box.findings}))
        cx = p.x + p.w - 4
        out.append(f'<rect x="{cx - 7 * len(codes) - 8}" y="{p.y - 8}" width="{7 * len(codes) + 10}" height="15" '
                   f'rx="7" fill="{SEVERITY_COLOURS[sev]}"/><text x="{cx - 3}" y="{p.y + 3}" class="b" '
                   f'text-anchor="end">{esc(codes)}</text>')
    out.append("</g>")


def _group(p, out: list) -> None:
    g = p.item
    sev = g.worst
    stroke = SEVERITY_COLOURS[sev] if sev else "#9aa5b1"
    out.append(f'<g class="group" data-path="{esc(g.path)}"><title>{esc(g.path)}: {esc(g.label)}, '
               f'{g.layers} layers, {esc(params_text(g.params))}'
               + "".join("\n" + esc(finding_text(d)) for d in g.findings) + "</title>")
    out.append(f'<rect x="{p.x}" y="{p.y}" width="{p.w}" height="{p.h}" rx="8" fill="#eef2f7" fill-opacity="0.45" '
               f'stroke="{stroke}" stroke-dasharray="5 3"/>')
    out.append(f'<text x="{p.x + 8}" y="{p.y + 16}" class="g"><tspan class="nm">{esc(clip(g.name, 28))}</tspan> '
               f'{esc(g.label)} \u00b7 {g.layers} layers</text></g>')


def _join(p, out: list) -> None:
    m = p.item
    sev = worst(m.findings)
    stroke = SEVERITY_COLOURS[sev] if sev else "#5f6b7a"
    tip = f"{m.path}: {m.join} of {len(m.branches)} branches, output {shape_text(m.shape)}"
    tip += "".join("\n" + finding_text(d) for d in m.findings)
    cls = "join" + (f" finding {sev}" if sev else "")
    out.append(f'<g class="{cls}" data-path="{esc(m.path)}"><title>{esc(tip)}</title>'
               f'<rect x="{p.x}" y="{p.y}" width="{p.w}" height="{p.h}" rx="11" fill="#fff8e1" stroke="{stroke}"/>'
               f'<text x="{p.x + p.w // 2}" y="{p.y + 15}" class="j" text-anchor="middle">{esc(m.join)}</text></g>')


def render_svg(view: View, drawing: Drawing | None = None) -> str:
    d = drawing or layout(view)
    foot = view.unplaced
    width = max(d.width, 640)
    legend_rows = -(-len(FAMILY_ORDER) // max(1, (width - 2 * MARGIN) // LEGEND_W))
    shift = LEGEND_H * legend_rows + 6  # room for the legend above the drawing
    height = d.height + shift + (LINE_H * (len(foot) + 1) + 8 if foot else 0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="{esc(FONT)}">',
           f"<title>{esc(view.name)}: nnspec architecture diagram</title>",
           "<style>.t{font-size:12px;fill:#1f2933}.k{font-weight:700}.s{font-size:11px;fill:#52606d}"
           f".i{{font-size:10px;font-family:{MONO}}}.b{{font-size:10px;fill:#fff;font-weight:700}}"
           ".g{font-size:11px;fill:#3e4c59}.g .nm{font-weight:700}.j{font-size:11px;fill:#3e4c59}"
           ".bl{font-size:9px;fill:#7b8794;font-style:italic}.h{font-size:14px;font-weight:700;fill:#1f2933}"
           ".hs{font-size:11px;fill:#52606d}.f{font-size:11px}</style>",
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    errors = sum(1 for f in view.findings if f.severity == "error")
    warnings = sum(1 for f in view.findings if f.severity == "warning")
    out.append(f'<text x="{MARGIN}" y="{MARGIN + 10}" class="h">{esc(view.name)}</text>'
               f'<text x="{MARGIN}" y="{MARGIN + 26}" class="hs">{esc(shape_text(view.input_shape))} \u2192 '
               f'{esc(shape_text(view.output_shape))} \u00b7 {view.layers} layers \u00b7 '
               f'{view.params:,} parameters \u00b7 {errors} errors, {warnings} warnings</text>')
    per_row = max(1, (width - 2 * MARGIN) // LEGEND_W)
    for i, fam in enumerate(FAMILY_ORDER):  # the initializer families, under the title
        x = MARGIN + LEGEND_W * (i % per_row)
        y = MARGIN + 34 + LEGEND_H * (i // per_row)
        out.append(f'<rect x="{x}" y="{y}" width="8" height="8" fill="{FAMILY_COLOURS[fam]}"/>'
                   f'<text x="{x + 11}" y="{y + 8}" class="hs">{esc(fam)}</text>')
    out.append(f'<g transform="translate(0 {shift})">')
    out.append('<g class="edges" fill="none" stroke="#7b8794" stroke-width="1.2">')
    for edge in d.edges:
        out.append('<polyline points="' + " ".join(f"{x},{y}" for x, y in edge) + '"/>')
    out.append("</g>")
    for p in d.placed:
        if p.kind == "group":
            _group(p, out)
    for p in d.placed:
        if p.kind == "layer":
            _layer(p, out)
        elif p.kind == "join":
            _join(p, out)
        elif p.kind == "branch-label" and p.text != "branch":
            out.append(f'<text x="{p.x}" y="{p.y + 9}" class="bl">{esc(p.text)}</text>')
    out.append("</g>")
    if foot:
        y = d.height + shift + 4
        out.append(f'<text x="{MARGIN}" y="{y + 10}" class="hs">Findings on no layer:</text>')
        for f in foot:
            y += LINE_H
            out.append(f'<text x="{MARGIN}" y="{y + 10}" class="f finding {f.severity}" '
                       f'fill="{SEVERITY_COLOURS.get(f.severity, "#333")}">{esc(finding_text(f))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


__all__ = ["render_svg", "BOX_W"]
