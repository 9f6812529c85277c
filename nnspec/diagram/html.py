"""The architecture diagram as one self-contained HTML page.

The browser lays it out: a sequence is a flex column, a merge a row of branch columns between a
fork bar and a join, a block call or `repeat` container a `<details>` element, so collapsing and
expanding need no layout code. Groups with more than `COLLAPSE_AT` layers start collapsed (their
summary gives the count) unless something inside has a finding. Clicking a layer shows its
initializers and findings (with `file:line`) in the side panel; hovering shows them as a tooltip.
No network, no external scripts or fonts.
"""

from __future__ import annotations

import json

from nnspec.diagram.style import FAMILY_COLOURS, FONT, MONO, SEVERITY_COLOURS, esc, worst
from nnspec.diagram.svg import box_tooltip
from nnspec.diagram.view import FAMILY_ORDER, Box, Group, Merge, View, finding_text, params_text, shape_text

COLLAPSE_AT = 12

CSS = """
*{box-sizing:border-box}
body{margin:0;font-family:%(font)s;color:#1f2933;background:#fff}
header{padding:12px 16px;border-bottom:1px solid #d9e2ec;position:sticky;top:0;background:#fff;z-index:2}
h1{font-size:18px;margin:0 0 4px}
.sub{font-size:12px;color:#52606d}
.legend span{display:inline-block;margin-right:10px;font-size:11px}
.legend i{display:inline-block;width:9px;height:9px;margin-right:3px;vertical-align:middle}
.tools{margin-top:6px}
button{font:inherit;font-size:12px;margin-right:6px}
main{display:flex;align-items:flex-start}
#canvas{flex:1;overflow:auto;padding:16px 24px}
#panel{width:380px;flex:none;position:sticky;top:90px;max-height:calc(100vh - 100px);overflow:auto;
  border-left:1px solid #d9e2ec;padding:10px 14px;font-size:12px}
#panel h2{font-size:14px;margin:0 0 6px}
#panel .mono{font-family:%(mono)s;font-size:11px}
.seq{display:flex;flex-direction:column;align-items:center}
.edge{width:0;height:16px;border-left:1.5px solid #7b8794;flex:none}
.layer{width:230px;border:1px solid #5f6b7a;border-radius:5px;padding:4px 8px;background:#fff;cursor:pointer;
  font-size:12px;position:relative}
.layer.noparams{background:#f4f6f8}
.layer .k{font-weight:700}
.layer .s{font-size:11px;color:#52606d}
.layer .i{font-family:%(mono)s;font-size:10px;line-height:14px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.layer .i b{display:inline-block;width:8px;height:8px;margin-right:4px;border-radius:1px}
.layer.selected,.join.selected{box-shadow:0 0 0 3px #90caf9}
.layer:focus-visible,.join:focus-visible{outline:2px solid #1e88e5;outline-offset:2px}
.finding.error{border:2.5px solid %(error)s}
.finding.warning{border:2.5px solid %(warning)s}
.finding.info{border:2.5px solid %(info)s}
.badge{position:absolute;top:-9px;right:6px;color:#fff;font-size:10px;font-weight:700;border-radius:8px;
  padding:0 6px;line-height:15px}
.badge.error{background:%(error)s}.badge.warning{background:%(warning)s}.badge.info{background:%(info)s}
.merge{display:flex;flex-direction:column;align-items:center}
.branches{display:flex;align-items:stretch}
.branch{display:flex;flex-direction:column;align-items:center;position:relative;padding:0 10px;min-width:70px}
.branch::before,.branch::after{content:"";position:absolute;left:0;right:0;border-top:1.5px solid #7b8794}
.branch::before{top:0}.branch::after{bottom:0}
.branch:first-child::before,.branch:first-child::after{left:50%%}
.branch:last-child::before,.branch:last-child::after{right:50%%}
.branch:only-child::before,.branch:only-child::after{display:none}
.branch .fill{flex:1;width:0;border-left:1.5px solid #7b8794;min-height:16px}
.blabel{font-size:9px;color:#7b8794;font-style:italic;height:0;overflow:visible;align-self:center;
  transform:translate(22px,2px)}
.join{border:1px solid #5f6b7a;border-radius:11px;background:#fff8e1;font-size:11px;padding:2px 10px;
  cursor:pointer}
details.group{border:1px dashed #9aa5b1;border-radius:8px;background:rgba(238,242,247,.45);padding:0 10px 10px}
details.group.has-error{border-color:%(error)s}details.group.has-warning{border-color:%(warning)s}
details.group>summary{font-size:11px;color:#3e4c59;padding:5px 0;cursor:pointer;list-style-position:inside}
details.group>summary .nm{font-weight:700}
details.group>summary .cnt{color:#7b8794}
details.group>summary .fb{color:#fff;border-radius:8px;padding:0 6px;margin-left:6px;font-weight:700}
.fb.error{background:%(error)s}.fb.warning{background:%(warning)s}.fb.info{background:%(info)s}
ul.unplaced{margin:6px 0 0;padding-left:18px;font-size:12px}
.sev-error{color:%(error)s}.sev-warning{color:%(warning)s}.sev-info{color:%(info)s}
"""

JS = """
(function(){
  var data = JSON.parse(document.getElementById('nnspec-data').textContent);
  var panel = document.getElementById('panel');
  var selected = null;
  function el(tag, cls, text){var e=document.createElement(tag); if(cls){e.className=cls;}
    if(text!==undefined){e.textContent=text;} return e;}
  function show(id){
    var info = data[id]; if(!info){return;}
    if(selected){selected.classList.remove('selected');}
    selected = document.getElementById(id); if(selected){selected.classList.add('selected');}
    panel.textContent='';
    panel.appendChild(el('h2', '', info.title));
    info.lines.forEach(function(l){panel.appendChild(el('div', 'mono', l));});
    info.findings.forEach(function(f){
      var d = el('p', 'sev-' + f.severity);
      d.appendChild(el('b', '', f.code + ' ' + f.severity + ' '));
      d.appendChild(el('span', 'mono', f.at));
      d.appendChild(el('div', '', f.message));
      if(f.hint){d.appendChild(el('div', 'sub', 'hint: ' + f.hint));}
      panel.appendChild(d);
    });
  }
  document.getElementById('canvas').addEventListener('click', function(ev){
    var t = ev.target.closest('[data-info]'); if(t){show(t.id);}
  });
  document.getElementById('canvas').addEventListener('keydown', function(ev){
    if(ev.key !== 'Enter' && ev.key !== ' '){return;}
    var t = ev.target.closest('[data-info]'); if(t){ev.preventDefault(); show(t.id);}
  });
  function setAll(open){document.querySelectorAll('details.group').forEach(function(d){d.open=open;});}
  document.getElementById('expand').addEventListener('click', function(){setAll(true);});
  document.getElementById('collapse').addEventListener('click', function(){setAll(false);});
})();
"""


class _Writer:
    def __init__(self):
        self.out: list = []
        self.info: dict = {}

    def finding_info(self, d) -> dict:
        return {"code": d.code, "severity": d.severity, "at": f"{d.file}:{d.line}:{d.column}",
                "message": d.message, "hint": d.hint}

    def box(self, box: Box) -> None:
        sev = worst(box.findings)
        cls = "layer" + ("" if box.params else " noparams") + (f" finding {sev}" if sev else "")
        self.info[box.id] = {"title": f"{box.path} ({box.kind})",
                             "lines": [f"line {box.line}", f"output {shape_text(box.shape)}",
                                       params_text(box.params)]
                             + [f"{i.role}: {i.text} [{i.family}] from {i.source}" for i in box.inits],
                             "findings": [self.finding_info(d) for d in box.findings]}
        self.out.append(f'<div class="{cls}" id="{box.id}" data-layer="{esc(box.path)}" data-info="1" tabindex="0" '
                        f'data-findings="{len(box.findings)}" title="{esc(box_tooltip(box))}">')
        if sev:
            codes = " ".join(sorted({d.code for d in box.findings}))
            self.out.append(f'<span class="badge {sev}">{esc(codes)}</span>')
        self.out.append(f'<div><span class="k">{esc(box.kind)}</span> <span class="nm">{esc(box.name)}</span></div>'
                        f'<div class="s">{esc(shape_text(box.shape))} \u00b7 {esc(params_text(box.params))}</div>')
        for i in box.inits:
            colour = FAMILY_COLOURS[i.family]
            self.out.append(f'<div class="i fam-{i.family}" style="color:{colour}"><b style="background:{colour}">'
                            f'</b>{esc(i.role)}: {esc(i.text)}</div>')
        self.out.append("</div>")

    def merge(self, m: Merge) -> None:
        self.out.append(f'<div class="merge" data-merge="{esc(m.path)}"><div class="branches">')
        for b in m.branches:
            self.out.append('<div class="branch">')
            self.out.append(f'<div class="blabel">{esc(b.label) if b.label != "branch" else ""}</div>')
            if b.items:
                self.out.append('<div class="edge"></div>')
                self.seq(b.items)
            self.out.append('<div class="fill"></div></div>')
        self.out.append('</div><div class="edge"></div>')
        sev = worst(m.findings)
        self.info[m.id] = {"title": f"{m.path}: {m.join}", "lines": [f"{m.join} of {len(m.branches)} branches",
                                                                     f"output {shape_text(m.shape)}"],
                           "findings": [self.finding_info(d) for d in m.findings]}
        tip = f"{m.path}: {m.join}, output {shape_text(m.shape)}" + "".join("\n" + finding_text(d)
                                                                           for d in m.findings)
        self.out.append(f'<div class="join{f" finding {sev}" if sev else ""}" id="{m.id}" data-info="1" tabindex="0" '
                        f'title="{esc(tip)}">{esc(m.join)}</div></div>')

    def group(self, g: Group) -> None:
        open_ = g.layers <= COLLAPSE_AT or g.inner_findings > 0
        cls = "group" + (f" has-{g.worst}" if g.worst else "")
        self.out.append(f'<details class="{cls}" id="{g.id}" data-group="{esc(g.path)}" '
                        f'data-layers="{g.layers}"{" open" if open_ else ""}>')
        badge = (f'<span class="fb {g.worst}">{g.inner_findings}</span>' if g.inner_findings else "")
        tip = "".join(finding_text(d) + "\n" for d in g.findings)
        self.out.append(f'<summary title="{esc(tip.strip())}"><span class="nm">{esc(g.name)}</span> {esc(g.label)} '
                        f'<span class="cnt">\u00b7 {g.layers} layers \u00b7 {esc(params_text(g.params))} \u00b7 '
                        f'{esc(shape_text(g.shape))}</span>{badge}</summary>')
        self.seq(g.items)
        self.out.append("</details>")

    def seq(self, items: list) -> None:
        self.out.append('<div class="seq">')
        for k, it in enumerate(items):
            if k:
                self.out.append('<div class="edge"></div>')
            if isinstance(it, Box):
                self.box(it)
            elif isinstance(it, Merge):
                self.merge(it)
            else:
                self.group(it)
        self.out.append("</div>")


def render_html(view: View) -> str:
    w = _Writer()
    w.seq(view.items)
    colours = {"font": FONT, "mono": MONO, **SEVERITY_COLOURS}
    errors = sum(1 for f in view.findings if f.severity == "error")
    warnings = sum(1 for f in view.findings if f.severity == "warning")
    legend = "".join(f'<span><i style="background:{FAMILY_COLOURS[f]}"></i>{esc(f)}</span>' for f in FAMILY_ORDER)
    unplaced = ""
    if view.unplaced:
        unplaced = '<ul class="unplaced">' + "".join(
            f'<li class="sev-{d.severity}">{esc(finding_text(d))}</li>' for d in view.unplaced) + "</ul>"
    # no "<" at all inside the script element: nothing in a spec's names or messages can end it early
    data = json.dumps(w.info, sort_keys=True, ensure_ascii=True).replace("<", "\\u003c")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(view.name)}: nnspec architecture diagram</title>"
        f"<style>{CSS % colours}</style></head><body>\n"
        f"<header><h1>{esc(view.name)}</h1><div class=\"sub\">{esc(view.file)} \u00b7 "
        f"{esc(shape_text(view.input_shape))} \u2192 {esc(shape_text(view.output_shape))} \u00b7 "
        f"{view.layers} layers \u00b7 {view.params:,} parameters \u00b7 {errors} errors, {warnings} warnings</div>"
        f'<div class="legend sub">initializers: {legend}</div>{unplaced}'
        '<div class="tools"><button id="expand" type="button">expand all</button>'
        '<button id="collapse" type="button">collapse all</button>'
        '<span class="sub">click a layer for its initializers and findings</span></div></header>\n'
        f'<main><div id="canvas">{"".join(w.out)}</div>'
        '<aside id="panel"><h2>Details</h2><div class="sub">Click a layer or a join.</div></aside></main>\n'
        f'<script type="application/json" id="nnspec-data">{data}</script>\n'
        f"<script>{JS}</script>\n</body></html>\n"
    )
