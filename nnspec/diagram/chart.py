"""`nnspec probe --plot`: the probe's figures as a chart, one panel per report, side by side.

Top: the std of every layer's output at init, through depth (forward order), on a log scale
shared by all panels, so that two specs compare at a glance; a zero std (a constant output)
sits on the floor line, marked. Bottom: for each layer with units (linear, conv), the share of
units that are identical to another after the probe's SGD steps and the share that never
received a gradient (dead). Self-contained SVG, or that SVG in an HTML page.
"""

from __future__ import annotations

import math

from nnspec.diagram.style import FONT, SEVERITY_COLOURS, esc

PANEL_W, STD_H, BAR_H = 560, 250, 140
LEFT, TOP, GAP = 62, 58, 46
PARAM_KINDS = ("linear", "embedding", "batchnorm", "layernorm")
IDENTICAL_COLOUR, DEAD_COLOUR = "#fb8c00", SEVERITY_COLOURS["error"]
STD_COLOUR = "#1e88e5"


def _is_param(kind: str) -> bool:
    return kind in PARAM_KINDS or kind.startswith("conv")


def _fmt(v: float) -> str:
    return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-") if (v >= 1e3 or v < 1e-2) else f"{v:g}"


def _decades(reports) -> tuple[int, int]:
    values = [a.std for r in reports for a in r.activations if a.std > 0 and math.isfinite(a.std)]
    if not values:
        return -1, 1
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    if hi - lo < 2:
        lo, hi = lo - 1, hi + 1
    return lo, hi


def _panel(report, x0: int, y0: int, lo: int, hi: int, out: list) -> None:
    acts = report.activations
    n = max(len(acts), 1)
    plot_w = PANEL_W - LEFT - 16
    step = plot_w / n

    def px(i: int) -> float:
        return x0 + LEFT + step * (i + 0.5)

    def py(std: float) -> float:
        if std <= 0 or not math.isfinite(std):
            return y0 + TOP + STD_H
        frac = (math.log10(std) - lo) / (hi - lo)
        return y0 + TOP + STD_H * (1 - frac)

    verdict = "FAILED: stuck or dead units" if report.failed else "ok: every unit moves apart and learns"
    out.append(f'<g class="panel" data-name="{esc(report.name)}">')
    out.append(f'<text x="{x0 + LEFT}" y="{y0 + 20}" class="h">{esc(report.name)}</text>'
               f'<text x="{x0 + LEFT}" y="{y0 + 36}" class="s">{report.steps} SGD steps, loss '
               f'{report.loss_before:.4g} \u2192 {report.loss_after:.4g} \u00b7 '
               f'<tspan fill="{DEAD_COLOUR if report.failed else "#2e7d32"}">{esc(verdict)}</tspan></text>')
    # std through depth
    top, bottom = y0 + TOP, y0 + TOP + STD_H
    out.append(f'<text x="{x0 + 4}" y="{top - 8}" class="a">output std at init (log scale; \u25cf layer with parameters, \u25cb without)</text>')
    for d in range(lo, hi + 1):
        y = py(10.0 ** d)
        out.append(f'<line x1="{x0 + LEFT}" y1="{y:.1f}" x2="{x0 + LEFT + plot_w}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{x0 + LEFT - 6}" y="{y + 4:.1f}" class="a" text-anchor="end">{_fmt(10.0 ** d)}</text>')
    out.append(f'<rect x="{x0 + LEFT}" y="{top}" width="{plot_w}" height="{STD_H}" class="frame"/>')
    points = " ".join(f"{px(i):.1f},{py(a.std):.1f}" for i, a in enumerate(acts))
    if points:
        out.append(f'<polyline points="{points}" fill="none" stroke="{STD_COLOUR}" stroke-width="1.5"/>')
    for i, a in enumerate(acts):
        zero = not (a.std > 0)
        colour = DEAD_COLOUR if zero else STD_COLOUR
        r = 3 if _is_param(a.kind) else 2
        fill = colour if _is_param(a.kind) else "#fff"
        out.append(f'<circle class="pt" cx="{px(i):.1f}" cy="{py(a.std):.1f}" r="{r}" fill="{fill}" '
                   f'stroke="{colour}"><title>{esc(a.path)} ({esc(a.kind)}): std {a.std:.4g}</title></circle>')
    # identical / dead units after training
    by_path = {p.path: p for p in report.layers}
    btop = bottom + GAP
    out.append(f'<text x="{x0 + 4}" y="{btop - 8}" class="a">units after training: '
               f'<tspan fill="{IDENTICAL_COLOUR}">\u25a0 identical</tspan> '
               f'<tspan fill="{DEAD_COLOUR}">\u25a0 dead (no gradient)</tspan></text>')
    for frac in (0.0, 0.5, 1.0):
        y = btop + BAR_H * (1 - frac)
        out.append(f'<line x1="{x0 + LEFT}" y1="{y:.1f}" x2="{x0 + LEFT + plot_w}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{x0 + LEFT - 6}" y="{y + 4:.1f}" class="a" text-anchor="end">{frac:.0%}</text>')
    out.append(f'<rect x="{x0 + LEFT}" y="{btop}" width="{plot_w}" height="{BAR_H}" class="frame"/>')
    bw = max(1.0, min(step * 0.4, 10))
    for i, a in enumerate(acts):
        p = by_path.get(a.path)
        if p is None or not p.units:
            continue
        for k, (frac, colour, what) in enumerate(((p.identical_fraction, IDENTICAL_COLOUR, "identical"),
                                                  (p.dead_fraction, DEAD_COLOUR, "dead"))):
            h = BAR_H * frac
            x = px(i) - bw + k * bw
            if h < 1.5:  # measured, and none: a tick on the floor, so that 0% reads as 0, not as missing
                out.append(f'<rect class="tick" x="{x:.1f}" y="{btop + BAR_H - 1.5:.1f}" width="{bw:.1f}" '
                           f'height="1.5" fill="{colour}" fill-opacity="0.6"/>')
            out.append(f'<rect class="bar {what}" x="{x:.1f}" y="{btop + BAR_H - h:.1f}" width="{bw:.1f}" '
                       f'height="{h:.1f}" fill="{colour}"><title>{esc(p.path)}: {frac:.0%} {what} '
                       f'({p.units} units, {p.distinct_after} distinct after training, {p.dead_units} without '
                       f'gradient)</title></rect>')
    out.append(f'<text x="{x0 + LEFT + plot_w / 2:.0f}" y="{btop + BAR_H + 28}" class="a" text-anchor="middle">'
               f'layer, in forward order (1 \u2026 {len(acts)})</text>')
    out.append("</g>")


def render_probe_svg(reports: list) -> str:
    lo, hi = _decades(reports)
    width = PANEL_W * len(reports) + 16
    height = TOP + STD_H + GAP + BAR_H + 44
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="{esc(FONT)}">',
           "<title>nnspec probe: " + esc(", ".join(r.name for r in reports)) + "</title>",
           "<style>.h{font-size:14px;font-weight:700;fill:#1f2933}.s{font-size:11px;fill:#52606d}"
           ".a{font-size:10px;fill:#52606d}.grid{stroke:#e4e7eb;stroke-width:1}"
           ".frame{fill:none;stroke:#9aa5b1}</style>",
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    for k, report in enumerate(reports):
        _panel(report, 8 + PANEL_W * k, 0, lo, hi, out)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_probe(reports: list, fmt: str) -> str:
    svg = render_probe_svg(reports)
    if fmt == "svg":
        return svg
    names = ", ".join(r.name for r in reports)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>nnspec probe: {esc(names)}</title>"
            f"<style>body{{margin:16px;font-family:{FONT}}}</style></head><body>\n"
            + svg + "</body></html>\n")
