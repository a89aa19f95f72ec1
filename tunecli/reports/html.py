"""One self-contained HTML file per report: plotly.js and every figure inlined, no network.

The page draws its figures with a small script that also records, on ``<body>``, how many
figures rendered (``data-figures-rendered``) and any script error (``data-errors``), so a
headless browser can check the page as a person would see it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import optuna

from tunecli.reports import figures
from tunecli.reports.export import best_study_yaml
from tunecli.reports.live import format_params
from tunecli.reports.summary import (
    effort_line,
    format_value,
    front,
    ranked,
    reported_trials,
)
from tunecli.spec import StudySpec

__all__ = ["comparison_report", "study_report", "write"]

_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0;
       color: #1d232a; background: #f5f6f8; }
header { background: #1d2b3a; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 2px 0; color: #c9d3dd; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 24px 48px; }
section { background: #fff; border-radius: 8px; padding: 16px 20px; margin: 16px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
section h2 { margin: 0 0 4px; font-size: 18px; }
.note { color: #5b6670; margin: 0 0 8px; }
.figure { width: 100%; height: 460px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { background: #eef2f6; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; }
pre { background: #f0f3f6; padding: 12px; border-radius: 6px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e7eb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""

# Errors are caught from the first line on; figures are drawn one by one and checked.
_ERRORS_FIRST = """
window.tunecliErrors = [];
window.addEventListener('error', function (e) {
  window.tunecliErrors.push(String(e.message || e));
  if (document.body) document.body.dataset.errors = window.tunecliErrors.join(' | ');
});
"""

_DRAW = """
(async function () {
  let rendered = 0;
  for (const div of document.querySelectorAll('div.figure')) {
    try {
      const spec = JSON.parse(document.getElementById(div.id + '-json').textContent);
      await Plotly.newPlot(div, spec.data, spec.layout,
                           {responsive: true, displaylogo: false});
      const drawn = div.querySelector('.main-svg') !== null && div._fullData.length > 0;
      div.dataset.rendered = drawn ? 'yes' : 'empty';
      if (drawn) rendered += 1;
    } catch (e) {
      div.dataset.rendered = 'error';
      window.tunecliErrors.push(div.id + ': ' + e);
    }
  }
  document.body.dataset.figuresRendered = String(rendered);
  document.body.dataset.errors = window.tunecliErrors.join(' | ');
  document.body.dataset.done = 'yes';
})();
"""


def _script_json(fig: Any) -> str:
    # "</" inside a <script> would end it early; "<\\/" is the same JSON string.
    return str(fig.to_json()).replace("</", "<\\/")


def _figure_section(key: str, title: str, fig: Any | None, note: str) -> str:
    body = f'<p class="note">{html.escape(note)}</p>' if note else ""
    if fig is None:
        return f'<section id="{key}"><h2>{html.escape(title)}</h2>{body}</section>'
    return (f'<section id="{key}"><h2>{html.escape(title)}</h2>{body}'
            f'<div class="figure" id="fig-{key}" data-figure="{key}"></div>'
            f'<script type="application/json" id="fig-{key}-json">{_script_json(fig)}</script>'
            f'</section>')


def _page(title: str, subtitle: list[str], sections: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    lines = "".join(f"<p>{html.escape(s)}</p>" for s in subtitle if s)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{_ERRORS_FIRST}</script><script>{get_plotlyjs()}</script></head>"
            f"<body><header><h1>{html.escape(title)}</h1>{lines}</header><main>"
            + "".join(sections) + f"</main><script>{_DRAW}</script></body></html>")


def _cards(items: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{html.escape(v)}</b>{html.escape(k)}</div>'
        for k, v in items) + "</div>"


def _top_table(data: dict[str, Any], top: int) -> str:
    rows = "".join(
        f'<tr><td class="num">{r["number"]}</td><td class="num">{format_value(r["value"])}</td>'
        f'<td class="num">{format_value(r.get("last_value"))}</td>'
        f'<td class="num">{r["epochs"]}</td>'
        f'<td>{html.escape(format_params(r["params"], limit=len(r["params"])))}</td></tr>'
        for r in ranked(data)[:top])
    return (f'<table><tr><th>#</th><th>{html.escape(data["metric"])} (best epoch)</th>'
            f"<th>at the last epoch</th><th>epochs</th><th>parameters</th></tr>{rows}</table>")


def _front_table(data: dict[str, Any]) -> str:
    names = [o["metric"] for o in data["objectives"]]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><td>{r['number']}</td>"
        + "".join(f"<td>{format_value((r.get('values') or {}).get(n))}</td>" for n in names)
        + f"<td>{html.escape(format_params(r['params'], limit=len(r['params'])))}</td></tr>"
        for r in front(data))
    return f"<table><tr><th>#</th>{head}<th>parameters</th></tr>{rows}</table>"


def study_report(study: optuna.Study, spec: StudySpec, data: dict[str, Any],
                 top: int = 10) -> str:
    """The HTML page of one study: counts, figures, best configuration, top trials."""
    counts = data["counts"]
    best = data["best"]
    cards = _cards([
        (f"best {data['metric']}", format_value(best["value"] if best else None)),
        ("best trial", f"#{best['number']}" if best else "-"),
        ("complete", str(counts["complete"])), ("pruned", str(counts["pruned"])),
        ("failed", str(counts["failed"])),
        ("epochs trained", f"{data['epochs']['spent']} / {data['epochs']['budgeted']}"),
    ])
    failures = _failure_items(data)
    sections = [f'<section id="overview"><h2>Overview</h2>{cards}'
                f'<p class="note">{html.escape(effort_line(data["epochs"]))}</p>'
                + (f'<h3>Why trials failed</h3><ul id="failures">{failures}</ul>'
                   if failures else "") + '</section>']
    for key, (title, fig, note) in figures.study_figures(study, data,
                                                         reported_trials(study)).items():
        sections.append(_figure_section(key, title, fig, note))
    if best:
        yaml_text = best_study_yaml(spec, data)
        sections.append(
            '<section id="best-config"><h2>Best configuration</h2>'
            f'<p class="note">Save as best.yaml (or run <code>tunecli report {spec.name} '
            f'--export best.yaml</code>), then <code>tunecli train best.yaml</code>.</p>'
            f"<pre>{html.escape(yaml_text)}</pre></section>")
        sections.append(f'<section id="top-trials"><h2>Top trials</h2>{_top_table(data, top)}'
                        "</section>")
    if data.get("front"):
        sections.insert(1, f'<section id="front"><h2>Pareto front</h2>{_front_table(data)}'
                           "</section>")
    aims = (", ".join(f"{o['direction']} {o['metric']}" for o in data["objectives"])
            if data.get("front") is not None else f"{data['direction']} {data['metric']}")
    subtitle = [f"{aims}{' · ' + ', '.join(data['constraints']) if data['constraints'] else ''}"
                f" · sampler {spec.sampler.type} · "
                f"pruner {spec.pruner.type} · {spec.trainer.model} on "
                f"{spec.trainer.dataset.name}, up to {spec.trainer.epochs} epochs"]
    return _page(f"tunecli study {spec.name}", subtitle, sections)


def _failure_items(data: dict[str, Any], prefix: str = "") -> str:
    """Failure reasons grouped with counts and an example trial, as list items."""
    return "".join(f"<li>{html.escape(prefix)}failed ×{g['count']} (e.g. trial "
                   f"#{g['example']}): {html.escape(g['reason'])}</li>"
                   for g in data.get("failures") or [])


def comparison_report(data: dict[str, Any]) -> str:
    """The HTML page comparing studies: best so far against trials and epochs."""
    names = list(data["studies"])
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(s['sampler'])} / "
        f"{html.escape(s['pruner'])}</td>"
        f'<td class="num">{format_value(s["best"]["value"] if s["best"] else None)}</td>'
        f'<td class="num">{s["counts"]["complete"]}</td>'
        f'<td class="num">{s["counts"]["pruned"]}</td>'
        f'<td class="num">{s["counts"]["failed"]}</td>'
        f'<td class="num">{s["epochs"]["spent"]}</td>'
        f'<td class="num">{s["epochs"]["seconds_spent"]:.0f} s</td></tr>'
        for n, s in data["studies"].items())
    table = ("<table><tr><th>study</th><th>sampler / pruner</th><th>best</th><th>complete</th>"
             "<th>pruned</th><th>failed</th><th>epochs trained</th><th>training time</th></tr>"
             f"{rows}</table>")
    notes = "".join(f'<p class="note">note: {html.escape(n)}</p>' for n in data["notes"])
    failures = "".join(_failure_items(s, f"{n}: ") for n, s in data["studies"].items())
    if failures:
        notes += f'<h3>Why trials failed</h3><ul id="failures">{failures}</ul>'
    sections = [f'<section id="overview"><h2>Studies</h2>{table}{notes}</section>',
                _figure_section("comparison", "Best so far",
                                figures.comparison(data["curves"], data["metric"]),
                                "Left: by trials finished; right: by epochs trained, which "
                                "counts what pruning saved.")]
    return _page("tunecli comparison: " + " vs ".join(names),
                 [f"{data['direction']} {data['metric']}"], sections)


def write(path: Path, page: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
