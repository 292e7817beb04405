"""``provbatch report RUN --html FILE``: one self-contained HTML page to look at a run.

The page needs nothing but a browser: no script, no font, no image file,
no network. It holds the run's provenance summary (what ``provbatch show``
prints), per OUTPUT attribute a distribution plot and summary statistics of
its values in the results file, the failures by error class with examples
(from the run's events), and the throughput over time (from the
``progress`` events the engine writes while it runs). Plots are inline SVG,
drawn here: a histogram for numbers (array elements pooled, composites per
component), bars of the most frequent values for booleans and text.

Values are read typed (:mod:`.results_reader`), so the statistics are those
of the numbers the plugin returned, not of their text.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..contract import datatypes
from ..errors import UsageError

WIDTH, HEIGHT, PAD = 520, 200, 36
BINS = 20
TOP_VALUES = 12
EXAMPLES_PER_CLASS = 3
COLOR = "#3b6ea5"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------- values per attribute


@dataclass
class Column:
    """The values of one attribute (or one component of a composite), pooled over array elements."""

    name: str
    datatype: str | None
    values: list[Any] = field(default_factory=list)
    missing: int = 0
    lengths: list[int] = field(default_factory=list)  # arrays: elements per entity

    @property
    def numeric(self) -> bool:
        return bool(self.values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)


def _component_types(datatype: str | None) -> list[str | None]:
    """The datatypes of a composite's components (one column each); the datatype itself otherwise."""
    try:
        node = datatypes.parse(datatype, strict=True) if datatype else None
    except datatypes.DatatypeError:
        node = None
    return [part.text for part in node.parts] if isinstance(node, datatypes.Composite) else [datatype]


def collect_columns(rows: Iterable[tuple[str, list[Any]]], names: tuple[str, ...], datatypes: tuple[str | None, ...]) -> list[Column]:
    """One :class:`Column` per attribute; a composite ``A;B`` gives ``name[1]``, ``name[2]``."""
    layout: list[list[Column]] = []
    for name, datatype in zip(names, datatypes):
        parts = _component_types(datatype)
        if len(parts) == 1:
            layout.append([Column(name, datatype)])
        else:
            layout.append([Column(f"{name}[{i}]", part) for i, part in enumerate(parts, 1)])
    for _entity, values in rows:
        for columns, value in zip(layout, values):
            items = list(value) if isinstance(value, tuple) else [value]
            for column, item in zip(columns, items):
                if item is None:
                    column.missing += 1
                elif isinstance(item, list):
                    column.lengths.append(len(item))
                    column.values.extend(item)
                else:
                    column.values.append(item)
    return [column for columns in layout for column in columns]


def summary_statistics(column: Column) -> list[tuple[str, str]]:
    """(label, value) pairs: counts for every column; min, max, mean, median, stdev for numbers; distinct for the rest."""
    stats = [("values", f"{len(column.values):,}"), ("missing", f"{column.missing:,}")]
    if column.lengths:
        stats.append(("elements per entity", f"{min(column.lengths)}..{max(column.lengths)}"))
    if column.numeric:
        numbers = [float(v) for v in column.values]
        stats += [("min", _num(min(numbers))), ("max", _num(max(numbers))), ("mean", _num(statistics.fmean(numbers))),
                  ("median", _num(statistics.median(numbers))),
                  ("stdev", _num(statistics.stdev(numbers)) if len(numbers) > 1 else "-")]
    elif column.values:
        counts = Counter(map(_label, column.values))
        stats.append(("distinct", f"{len(counts):,}"))
        top, n = counts.most_common(1)[0]
        stats.append(("most frequent", f"{top} ({n:,})"))
    return stats


def _label(value: Any) -> str:
    """A value as the results file writes it (booleans as true/false)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _num(x: float) -> str:
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.6g}"


# --------------------------------------------------------------------------- SVG plots


def _svg(body: str, label: str, kind: str, height: int = HEIGHT) -> str:
    return (f'<svg class="plot {kind}" role="img" aria-label="{_e(label)}" xmlns="http://www.w3.org/2000/svg" '
            f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">'
            f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fff"/>{body}</svg>')


def histogram_svg(numbers: list[float], label: str, bins: int = BINS) -> str:
    """Bars of equal-width bins between the min and the max, with the axis ends labelled."""
    low, high = min(numbers), max(numbers)
    if high == low:
        counts, edges = [len(numbers)], [low, high]
    else:
        width = (high - low) / bins
        counts = [0] * bins
        for x in numbers:
            counts[min(int((x - low) / width), bins - 1)] += 1
        edges = [low + i * width for i in range(bins + 1)]
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    top = max(counts)
    bar_w = plot_w / len(counts)
    bars = []
    for i, count in enumerate(counts):
        h = plot_h * count / top if top else 0
        x = PAD + i * bar_w
        bars.append(f'<rect class="bar" x="{x:.1f}" y="{PAD + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" '
                    f'fill="{COLOR}"><title>{_num(edges[i])} .. {_num(edges[i + 1])}: {count}</title></rect>')
    axes = (f'<line x1="{PAD}" y1="{PAD + plot_h}" x2="{PAD + plot_w}" y2="{PAD + plot_h}" stroke="#333"/>'
            f'<text x="{PAD}" y="{HEIGHT - 12}" font-size="11">{_e(_num(low))}</text>'
            f'<text x="{PAD + plot_w}" y="{HEIGHT - 12}" font-size="11" text-anchor="end">{_e(_num(high))}</text>'
            f'<text x="{PAD - 4}" y="{PAD + 4}" font-size="11" text-anchor="end">{top}</text>'
            f'<text x="{WIDTH / 2}" y="{PAD - 14}" font-size="12" text-anchor="middle">{_e(label)}: {len(numbers):,} values</text>')
    return _svg("".join(bars) + axes, f"histogram of {label}", "histogram")


def bars_svg(counts: list[tuple[str, int]], label: str) -> str:
    """Horizontal bars of the most frequent values."""
    row_h = 18
    height = PAD + row_h * len(counts) + 12
    top = max(n for _v, n in counts)
    label_w = 150
    plot_w = WIDTH - label_w - 70
    rows = []
    for i, (value, n) in enumerate(counts):
        y = PAD + i * row_h
        w = plot_w * n / top
        shown = value if len(value) <= 22 else value[:21] + "\u2026"
        rows.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="11" text-anchor="end">{_e(shown)}</text>'
                    f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{max(w, 1):.1f}" height="{row_h - 4}" fill="{COLOR}">'
                    f'<title>{_e(value)}: {n}</title></rect>'
                    f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="11">{n:,}</text>')
    title = f'<text x="{WIDTH / 2}" y="{PAD - 14}" font-size="12" text-anchor="middle">{_e(label)}: most frequent values</text>'
    return _svg(title + "".join(rows), f"value counts of {label}", "bars", height)


def line_svg(points: list[tuple[float, float]], label: str, y_label: str) -> str:
    """A polyline of (seconds, value) points with the axis ends labelled."""
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    x_max = max(p[0] for p in points) or 1.0
    y_max = max(p[1] for p in points) or 1.0
    coords = " ".join(f"{PAD + plot_w * x / x_max:.1f},{PAD + plot_h - plot_h * y / y_max:.1f}" for x, y in points)
    body = (f'<polyline class="series" points="{coords}" fill="none" stroke="{COLOR}" stroke-width="2"/>'
            f'<line x1="{PAD}" y1="{PAD + plot_h}" x2="{PAD + plot_w}" y2="{PAD + plot_h}" stroke="#333"/>'
            f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{PAD + plot_h}" stroke="#333"/>'
            f'<text x="{PAD}" y="{HEIGHT - 12}" font-size="11">0 s</text>'
            f'<text x="{PAD + plot_w}" y="{HEIGHT - 12}" font-size="11" text-anchor="end">{x_max:.1f} s</text>'
            f'<text x="{PAD - 4}" y="{PAD + 4}" font-size="11" text-anchor="end">{_e(_num(y_max))}</text>'
            f'<text x="{WIDTH / 2}" y="{PAD - 14}" font-size="12" text-anchor="middle">{_e(label)} ({_e(y_label)})</text>')
    return _svg(body, label, "line")


def column_plot(column: Column) -> str:
    if not column.values:
        return '<p class="empty">no values</p>'
    if column.numeric:
        return histogram_svg([float(v) for v in column.values], column.name)
    counts = Counter(map(_label, column.values))
    return bars_svg(counts.most_common(TOP_VALUES), column.name)


# --------------------------------------------------------------------------- the run's events


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    events = []
    try:
        with open(run_dir / "events.jsonl", encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a torn last line of a killed run
                if isinstance(event, dict):
                    events.append(event)
    except OSError:
        pass
    return events


def throughput_points(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(seconds since launch, entities computed so far), from ``launch_started``, ``progress`` and the end event."""
    start = None
    points: list[tuple[float, float]] = []
    for event in events:
        try:
            moment = datetime.fromisoformat(str(event.get("time")))
        except ValueError:
            continue
        name = event.get("event")
        if name == "launch_started":
            start = moment
            points = [(0.0, 0.0)]
        elif start is not None and name in ("progress", "run_finished", "run_failed", "run_interrupted"):
            counts = event.get("counts") or {}
            done = event.get("computed", counts.get("computed"))
            if isinstance(done, int):
                points.append(((moment - start).total_seconds(), float(done)))
    return points


def failures_by_class(events: list[dict[str, Any]]) -> list[tuple[str, int, list[dict[str, Any]]]]:
    """(error class, count, first examples), most frequent first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("event") == "entity_failed":
            groups.setdefault(str(event.get("error_class", "?")), []).append(event)
    ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [(name, len(items), items[:EXAMPLES_PER_CLASS]) for name, items in ranked]


# --------------------------------------------------------------------------- the page

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.attribute{display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap;margin-bottom:1.5em}
.note{color:#666;font-size:13px}
"""


def _table(rows: list[tuple[str, str]], css: str = "stats") -> str:
    return f'<table class="{css}">' + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _results_section(run_dir: Path, config: dict[str, Any] | None) -> str:
    from .results_reader import iter_typed_rows, results_path_of, schema_of_config

    if config is None:
        return '<p class="note">no run_config.json: the results cannot be read typed</p>'
    results = results_path_of(config)
    schema = schema_of_config(config, str(run_dir / "run_config.json"))
    if results is None or schema is None:
        return '<p class="note">the results went to stdout or the caller: no results file to summarize</p>'
    if not results.is_file():
        return f'<p class="note">{_e(results)}: not found (moved or deleted since the run)</p>'
    columns = collect_columns(iter_typed_rows(results, schema), schema.names, schema.datatypes)
    parts = [f'<p class="note">from {_e(results)} (every row of the file, earlier resumed runs included)</p>']
    for column in columns:
        parts.append(f'<div class="attribute" id="attr-{_e(column.name)}"><div><h3>{_e(column.name)}</h3>'
                     f'<p class="note">{_e(column.datatype or "no datatype")}</p>{_table(summary_statistics(column))}</div>'
                     f'{column_plot(column)}</div>')
    return "".join(parts)


def _failures_section(events: list[dict[str, Any]]) -> str:
    groups = failures_by_class(events)
    if not groups:
        return "<p>no entity failed in this run</p>"
    rows = []
    for name, count, examples in groups:
        shown = "<br>".join(f"<code>{_e(ex.get('entity'))}</code>: {_e(str(ex.get('message', ''))[:200])}" for ex in examples)
        rows.append(f"<tr><td>{_e(name)}</td><td>{count:,}</td><td>{shown}</td></tr>")
    return ('<table class="failures"><tr><th>error class</th><th>entities</th><th>examples</th></tr>'
            + "".join(rows) + "</table>")


def _throughput_section(events: list[dict[str, Any]]) -> str:
    points = throughput_points(events)
    if len(points) < 2:
        return '<p class="note">no progress recorded (the run ended before its first progress event)</p>'
    seconds, total = points[-1]
    rate = total / seconds if seconds > 0 else float("nan")
    rates = [(b[0], (b[1] - a[1]) / (b[0] - a[0])) for a, b in zip(points, points[1:]) if b[0] > a[0]]
    plots = line_svg(points, "entities computed", "cumulative")
    if len(rates) > 1:
        plots += line_svg(rates, "throughput", "entities/s")
    overall = f"{rate:,.1f} entities/s" if not math.isnan(rate) else "-"
    return (f'<p>{int(total):,} entities in {seconds:.2f} s: {overall} overall</p>'
            f'<div class="attribute">{plots}</div>')


def render_html(run_dir: str | Path) -> str:
    """The HTML page of the run in ``run_dir``."""
    from ..provenance.rundirs import load_manifest, load_run_config
    from ..provenance.show import summarize_run

    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    try:
        config: dict[str, Any] | None = load_run_config(run_dir)
    except UsageError:
        config = None
    events = read_events(run_dir)
    plugin = manifest.get("plugin") or {}
    counts = manifest.get("counts") or {}
    trial = (config or {}).get("trial")
    trial_note = f'<p class="trial"><strong>trial run</strong>: {_e(trial)}</p>' if trial else ""
    title = f"provbatch run {manifest.get('uuid', '')[:8]}: {plugin.get('id', '?')}"
    overview = [("status", f"{manifest.get('status')} ({manifest.get('comp_status') or '-'})"),
                ("plugin", f"{plugin.get('id')} {plugin.get('version')} ({plugin.get('lang')})"),
                *((k.replace("_", " "), str(v)) for k, v in counts.items())]
    return "".join([
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{GENERATOR}',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>", trial_note,
        f'<section id="overview">{_table(overview, "overview")}</section>',
        f'<section id="attributes"><h2>Attributes</h2>{_results_section(run_dir, config)}</section>',
        f'<section id="failures"><h2>Failures by error class</h2>{_failures_section(events)}</section>',
        f'<section id="throughput"><h2>Throughput</h2>{_throughput_section(events)}</section>',
        f'<section id="provenance"><h2>Provenance</h2><pre>{_e(summarize_run(run_dir))}</pre></section>',
        "</body></html>\n",
    ])


#: marks a page this module wrote: only such a page is replaced by a new report, never another file
GENERATOR = '<meta name="generator" content="provbatch report">'


def write_html_report(run_dir: str | Path, target: str | Path) -> Path:
    """Render the run's page and write it to ``target`` atomically.

    An existing ``target`` is replaced only when it is a report written
    here (it carries :data:`GENERATOR`): a file of the user's is never lost.
    """
    from ..files import atomic_write

    target = Path(target)
    if target.exists():
        try:
            with open(target, encoding="utf-8", errors="replace") as handle:
                ours = GENERATOR in handle.read(4096)
        except OSError:
            ours = False
        if not ours:
            raise UsageError(f"{target}: exists and is not a provbatch report; not overwritten (choose another --html FILE)")
    page = render_html(run_dir)
    try:
        atomic_write(target, page)
    except OSError as exc:
        raise UsageError(f"{target}: cannot write the report: {exc.strerror or exc}") from exc
    return target
