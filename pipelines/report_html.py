"""report.html: the run and its statistics as one self-contained page.

Charts are SVG drawn here (bars only: class balance, histograms), tables are plain HTML made
sortable by a few lines of inline JavaScript. Nothing is fetched at view time and nothing is
imported to draw: the page opens offline, from an object store's console or a mail attachment,
and always shows the same numbers as stats/*.parquet, which it is made from.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import math
import os

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.publish import REPORT_FILE
from transforms import storage
from transforms.stages.stats import BINS_PER_DECADE, COUNT_MEASURES, LOG_FLOOR, bin_edges

TOP_CLASSES = 20
BOX_MEASURES = (("box_width", "Box width (fraction of image width)"), ("box_height", "Box height (fraction of image height)"),
                ("box_area", "Box area (fraction of image)"), ("box_aspect", "Box aspect ratio (width / height, pixels)"))
_PALETTE = ("#3b6ea8", "#d9822b", "#4e9a5b", "#b54a4a", "#7d5ba6", "#8c6d46", "#c15f9c", "#6b6b6b")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d2330;background:#f4f6f9}
header{background:#1f2a3c;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header .meta{opacity:.8;font-size:13px;margin-top:4px}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:16px 20px;margin:16px 0}
h2{font-size:17px;margin:0 0 12px}h3{font-size:14px;margin:12px 0 6px;color:#445}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#f4f6f9;border-radius:6px;padding:10px 16px;min-width:120px}
.card .v{font-size:24px;font-weight:600}.card .k{font-size:12px;color:#556;text-transform:uppercase;letter-spacing:.04em}
.ok{color:#2d7d46}.bad{color:#b3261e}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px 24px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #e3e7ee;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#eef1f6;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#99a}
code.raw{display:block;min-width:300px;max-width:460px;max-height:6.5em;overflow:auto}
code{font-size:12px;background:#f4f6f9;padding:1px 4px;border-radius:3px;word-break:break-all}
.scroll{max-height:420px;overflow:auto}
svg text{font:11px system-ui,"DejaVu Sans",sans-serif;fill:#333}
.muted{color:#778}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
    var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),up=th.dataset.dir!=='asc';
    rows.sort(function(a,b){var x=a.cells[i].dataset.sort||a.cells[i].textContent,y=b.cells[i].dataset.sort||b.cells[i].textContent;
      var nx=parseFloat(x),ny=parseFloat(y),c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return up?c:-c;});
    th.dataset.dir=up?'asc':'desc';rows.forEach(function(r){body.appendChild(r);});});});});
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _e(value)


def _table(columns: list[str], rows: list[list], table_id: str, numeric: set[int] = frozenset()) -> str:
    """A sortable table; numeric columns carry their raw value in data-sort."""
    head = "".join(f'<th class="{"n" if i in numeric else ""}">{_e(c)}</th>' for i, c in enumerate(columns))
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if i in numeric:
                cells.append(f'<td class="n" data-sort="{_e(value if value is not None else "")}">{_num(value)}</td>')
            else:
                cells.append(f"<td>{value if isinstance(value, _Raw) else _e(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        return '<p class="muted">None.</p>'
    return f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _count_by_code(rows) -> dict[str, int]:
    """Rows of a per-code table (code, count, ...) summed per code."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["code"]] = counts.get(row["code"], 0) + row["count"]
    return counts


def _most_first(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _bar_chart(chart_id: str, bars: list[tuple[str, int]], color: str = _PALETTE[0], width: int = 600, total: int | None = None, label_w: int = 190) -> str:
    """Horizontal bars, one per (label, value), the value (and its share of `total`) at the end."""
    if not bars:
        return '<p class="muted">No data.</p>'
    row, top = 18, 4
    fits = (label_w - 10) // 7  # characters of the label column
    peak = max(v for _, v in bars) or 1
    shown_values = [f"{value:,}" + (f" ({value / total:.0%})" if total else "") for _, value in bars]
    plot = width - label_w - 4 - _text_width(max(shown_values, key=len)) - 4  # the longest value fits after the longest bar
    parts = []
    for i, ((label, value), shown) in enumerate(zip(bars, shown_values)):
        y = top + i * row
        w = max(1.0, plot * value / peak)
        short = label if len(label) <= fits else label[: fits - 1] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end"><title>{_e(label)}</title>{_e(short or "(none)")}</text>'
            f'<rect class="bar" data-label="{_e(label)}" data-value="{value}" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="{color}" rx="2"/>'
            f'<text class="value" x="{label_w + w + 4:.1f}" y="{y + 12}">{shown}</text>'
        )
    height = top * 2 + row * len(bars)
    return f'<svg class="chart" id="{chart_id}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(parts)}</svg>'


def _text_width(text: str) -> float:
    """A generous width of `text` in the charts' 11px font (digits and separators are narrower)."""
    return 7.0 * len(text)


def _round(value: float, up: bool) -> float:
    """`value` to 3 significant digits, rounded outwards so that a shown range holds its values."""
    if value <= 0 or not math.isfinite(value):
        return value
    scale = 10 ** (math.floor(math.log10(value)) - 2)
    return (math.ceil(value / scale - 1e-9) if up else math.floor(value / scale + 1e-9)) * scale


def _bin_range(measure: str, b: int, known: tuple[float, float] | None) -> tuple[float, float]:
    """The values bin `b` can hold, narrowed to the measure's known min and max."""
    lower, upper = bin_edges(measure, b)
    if known:
        lower, upper = max(lower, known[0]), min(upper, known[1])
    return lower, upper


def _range_label(measure: str, b: int, known: tuple[float, float] | None) -> str:
    """A bin as the values it holds: '576' when they are all one value, 'a-b' otherwise; whole
    pixels for image sizes, 3 significant digits rounded outwards for the rest."""
    lower, upper = _bin_range(measure, b, known)
    exact_upper = known is not None and upper == known[1]  # the max is a value held; a bin's upper edge is not
    if measure in ("image_width", "image_height"):
        lo, hi = math.ceil(lower), (math.floor(upper) if exact_upper else math.ceil(upper) - 1)
        return f"{lo:,}" if lo >= hi else f"{lo:,}–{hi:,}"
    lo, hi = _round(lower, up=False), _round(upper, up=True)
    return f"{lo:.3g}" if lower == upper else f"{lo:.3g}–{hi:.3g}"


def _histogram(chart_id: str, measure: str, bins: list[tuple[int, int]], color: str, width: int = 600, height: int = 180,
               known: tuple[float, float] | None = None) -> str:
    """Vertical bars over consecutive bins (empty bins between shown as gaps). Below them: each
    bin's own range when there are few, else the decades' edges on the axis. `known` is the
    measure's (min, max), which narrows the ranges of the end bins to the values they hold."""
    floor_bin = math.floor(math.log10(LOG_FLOOR) * BINS_PER_DECADE + 1e-9)
    at_floor = sum(n for b, n in bins if measure not in COUNT_MEASURES and b <= floor_bin)
    bins = [(b, n) for b, n in bins if measure in COUNT_MEASURES or b > floor_bin]
    note = f'<div class="muted">+ {at_floor:,} at or near 0, not drawn</div>' if at_floor else ""
    if not bins:
        return note or '<p class="muted">No data.</p>'
    first, last = bins[0][0], bins[-1][0]
    counts = dict(bins)
    slots = list(range(first, last + 1))
    peak = max(counts.values())
    left, bottom, top, right = max(36.0, _text_width(f"{peak:,}") + 8), 28, 8, 8
    plot_w, plot_h = width - left - right, height - bottom - top
    slot_w = plot_w / len(slots)
    parts = [f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#99a"/>',
             f'<text class="tick-y" x="{left - 4}" y="{top + 9}" text-anchor="end">{peak:,}</text>',
             f'<text class="tick-y" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>']
    for i, b in enumerate(slots):
        if b not in counts:
            continue
        lower, upper = bin_edges(measure, b)
        h = max(1.0, plot_h * counts[b] / peak)
        x = left + i * slot_w
        parts.append(
            f'<rect class="bar" data-bin="{b}" data-value="{counts[b]}" data-lower="{lower!r}" data-upper="{upper!r}" x="{x + 0.5:.1f}" '
            f'y="{top + plot_h - h:.1f}" width="{max(1.0, slot_w - 1):.1f}" height="{h:.1f}" fill="{color}">'
            f'<title>[{lower:.4g}, {upper:.4g}): {counts[b]:,}</title></rect>'
        )
    for x, text, css, b in _ticks(measure, slots, counts, left, slot_w, known):
        half = _text_width(text) / 2
        at = min(max(x, half + 1), width - half - 1)  # the whole label inside the chart
        bin_attr = f' data-bin="{b}"' if b is not None else ""
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="#99a"/>'
                     f'<text class="{css}"{bin_attr} x="{at:.1f}" y="{height - 10}" text-anchor="middle">{text}</text>')
    return f'<svg class="chart" id="{chart_id}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(parts)}</svg>{note}'


def _ticks(measure: str, slots: list[int], counts: dict[int, int], left: float, slot_w: float,
           known: tuple[float, float] | None) -> list[tuple[float, str, str, int | None]]:
    """Axis labels (x, text, class, bin): a bin's label (class bin-label) sits under the bin's
    middle and names the values it holds; an edge label (class edge) sits on a bin boundary and
    names that boundary. Integer counts: their values. Few bins: each bin's range. Many: decades."""
    if measure in COUNT_MEASURES:
        step = max(1, math.ceil(len(slots) / 10))
        return [(left + (i + 0.5) * slot_w, str(b), "bin-label", b) for i, b in enumerate(slots) if i % step == 0]
    occupied = [(i, b) for i, b in enumerate(slots) if b in counts]
    decades = [(i, b) for i, b in enumerate(slots) if b % BINS_PER_DECADE == 0 and 0 < i]
    edges = [(left + i * slot_w, f"{bin_edges(measure, b)[0]:.3g}", "edge", None) for i, b in decades]
    if len(occupied) > 6 and len(decades) >= 2:
        return edges
    chosen = occupied if len(occupied) <= 6 else [occupied[0], occupied[-1]]
    candidates = [(left + (i + 0.5) * slot_w, _range_label(measure, b, known), "bin-label", b) for i, b in chosen]
    placed: list[tuple[float, str, str, int | None]] = []
    for tick in candidates + (edges if len(occupied) > 6 else []):  # a label that would overlap one placed is left out
        x, text = tick[0], tick[1]
        if all(abs(x - other[0]) > (_text_width(text) + _text_width(other[1])) / 2 + 4 for other in placed):
            placed.append(tick)
    return sorted(placed)


def _known_range(quantiles: list[dict], measure: str) -> tuple[float, float] | None:
    """The measure's smallest and largest value over every class (the quantile table's min and max)."""
    rows = [q for q in quantiles if q["measure"] == measure and q["min"] is not None and q["max"] is not None]
    return (min(q["min"] for q in rows), max(q["max"] for q in rows)) if rows else None


def _bins_over_classes(histograms: list[dict], measure: str) -> list[tuple[int, int]]:
    counts: dict[int, int] = {}
    for h in histograms:
        if h["measure"] == measure:
            counts[h["bin"]] = counts.get(h["bin"], 0) + h["count"]
    return sorted(counts.items())


def _split_order(split: str) -> tuple:
    known = ("train", "validation", "test")
    return (known.index(split) if split in known else len(known), split)


def _when(value) -> str | None:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else None


# Card captions that say what a count counts (run.json's keys are kept as data-key).
_CAPTIONS = {"lines": "input items", "ok": "items parsed", "dead_letters": "dead letters", "records": "records parsed"}


def _card(key: str, value, css: str = "") -> str:
    caption = _CAPTIONS.get(key, key.replace("_", " "))
    return f'<div class="card"><div class="v {css}" data-key="{_e(key)}">{_num(value)}</div><div class="k">{_e(caption)}</div></div>'


def _refused_section(refused: list[dict], outputs: dict, short) -> str:
    """Rows a writer could not represent in its format: per output and code. The records are
    kept (records/, the other outputs); the rows are under refused/<format>/."""
    per_output = {name.split("/", 1)[1]: e["refused"] for name, e in outputs.items() if name.startswith("manifests/")}
    out = ['<section id="refused"><h2>Refused by output writers</h2><p class="muted">Kept records an output format cannot hold; '
           'still in records/ and every other output; one row each under refused/&lt;format&gt;/.</p>']
    if not refused:
        out.append('<p class="muted">No writer refused a record.</p></section>')
        return "".join(out)
    bars = _most_first({f"{name.split('/', 1)[-1]}: {code}": n for (name, code), n in _count_by_output_and_code(refused).items()})
    out.append(_bar_chart("chart-refused", bars, _PALETTE[2], width=760, label_w=350))
    landed = {name: outputs.get(f"refused/{name}", {}).get("landed", 0) for name in per_output}
    out.append(_table(["format", "refused by its writer", "rows in refused/<format>/"],
                      [[name, n, landed[name]] for name, n in per_output.items()], "t-refused-outputs", {1, 2}))
    out.append(_table(["output", "code", "file", "count", "example line", "message"],
                      [[r["output"], r["code"], short(r["uri"]), r["count"], r["example_line"], r["example_message"]] for r in refused],
                      "t-refused", {3, 4}))
    out.append("</section>")
    return "".join(out)


def _count_by_output_and_code(rows) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["output"], row["code"])
        counts[key] = counts.get(key, 0) + row["count"]
    return counts


def _output_problems(name: str, entry: dict) -> _Raw:
    """The problems run.json lists for an output, and one it does not: an output that was to
    hold rows and holds none (every row refused by its format, say) is flagged, never 'none'."""
    problems = list(entry.get("problems") or [])
    wanted = max(entry.get("expected") or 0, entry.get("given") or 0)
    if wanted and not entry.get("landed"):
        why = f": its writer refused all {entry['refused']:,}" if entry.get("refused") == wanted else ""
        problems.insert(0, f"nothing landed: 0 of {wanted:,} rows{why}")
    if not problems:
        return _Raw('<span class="ok">none</span>')
    return _Raw(f'<span class="bad" data-problem="{_e(name)}">{_e("; ".join(problems))}</span>')


def render(summary: dict, tables: dict[str, pa.Table]) -> str:
    """run.json's summary and the stats tables -> the report page."""
    rows = {name: table.to_pylist() for name, table in tables.items()}
    uris = [f["uri"] for f in rows.get("inputs", [])]
    prefix = os.path.commonprefix(uris).rsplit("/", 1)[0] + "/" if len(uris) > 1 and "/" in os.path.commonprefix(uris) else ""

    def short(uri: str) -> str:
        uri = storage.redact_url(uri)
        return uri[len(prefix):] if prefix and uri.startswith(prefix) else uri
    totals = summary.get("totals", {})
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>labelbeam run {_e(summary.get('run_id'))}</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<header><h1>labelbeam run report</h1><div class=meta>run {_e(summary.get('run_id'))} · {_e(summary.get('state'))} in "
           f"{_num(summary.get('seconds'))} s · started {_e(summary.get('started_at'))} · labelbeam {_e(summary.get('labelbeam'))}</div></header><main>"]

    reconciled = totals.get("reconciled")
    code = summary.get("exit_code")
    out.append('<section id="summary"><h2>Run summary</h2><div class="cards">')
    out.append(_card("exit_code", code, "ok" if code == 0 else "bad"))
    for key in ("files", "lines", "ok", "dead_letters", "blank", "records", "records_refused", "records_superseded", "records_merged", "records_kept", "records_written"):
        if key in ("records_superseded", "records_merged") and not totals.get(key):
            continue  # only a --on_duplicate policy folds records
        out.append(_card(key, totals.get(key)))
    out.append(f'<div class="card"><div class="v {"ok" if reconciled else "bad"}" data-key="reconciled">{"yes" if reconciled else "NO"}</div><div class="k">reconciled</div></div></div>')
    out.append(f'<p>{_e(summary.get("exit_meaning"))}. Every input item (a line, or an element of a JSON array such as a Label Studio task) '
               f'was parsed, is a dead letter or is blank: '
               f'{_num(totals.get("lines"))} = {_num(totals.get("ok"))} + {_num(totals.get("dead_letters"))} + {_num(totals.get("blank"))}. '
               f'The {_num(totals.get("ok"))} parsed items gave {_num(totals.get("records"))} records (a Label Studio task gives one per annotation '
               f'and per prediction).</p>')
    if summary.get("failure"):
        out.append(f'<p class="bad">FAILED: {_e(summary["failure"])}</p>')
    outputs = summary.get("outputs", {})
    out.append("<h3>Outputs (reconciliation)</h3>")
    out.append(_table(["output", "expected", "given", "refused", "landed", "files", "bytes", "problems"],
                      [[name, e["expected"], e["given"], e["refused"], e["landed"], e["files"], e["bytes"], _output_problems(name, e)]
                       for name, e in outputs.items()], "t-outputs", {1, 2, 3, 4, 5, 6}))
    out.append("</section>")

    out.append('<section id="classes"><h2>Class balance per split</h2><div class="grid">')
    classes = rows.get("classes", [])
    for i, split in enumerate(sorted({c["split"] for c in classes}, key=_split_order)):
        for kind in ("object", "label"):
            per = {}
            for c in classes:
                if c["split"] == split and c["kind"] == kind:
                    per[c["name"]] = per.get(c["name"], 0) + c["count"]
            if per:
                bars = sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CLASSES]
                out.append(f"<div><h3>{_e(split or '(no split)')}: {kind}s ({sum(per.values()):,})</h3>"
                           f"{_bar_chart(f'chart-classes-{split}-{kind}', bars, _PALETTE[i % len(_PALETTE)], total=sum(per.values()))}</div>")
    out.append("</div><h3>All classes</h3>")
    out.append(_table(["split", "task", "origin", "kind", "class", "count", "images", "share", "image share", "mean score"],
                      [[c["split"], c["task"], c["origin"], c["kind"], c["name"], c["count"], c["images"], c["share"], c["image_share"], c["mean_score"]]
                       for c in classes], "t-classes", {5, 6, 7, 8, 9}))
    out.append("</section>")

    quantile_rows = list(rows.get("quantiles", []))
    histograms = rows.get("histograms", [])
    out.append('<section id="geometry"><h2>Box sizes and aspect ratios</h2><p class="muted">All classes; log-scale bins, 20 per decade. Hover a bar for its range.</p><div class="grid">')
    for i, (measure, title) in enumerate(BOX_MEASURES):
        out.append(f"<div><h3>{_e(title)}</h3>{_histogram(f'chart-{measure}', measure, _bins_over_classes(histograms, measure), _PALETTE[i], known=_known_range(quantile_rows, measure))}</div>")
    out.append("</div><h3>Quantiles per class</h3>")
    out.append(_table(["measure", "class", "count", "min", "p05", "p25", "median", "p75", "p95", "max", "mean"],
                      [[q["measure"], q["name"], q["count"], q["min"], q["p05"], q["p25"], q["p50"], q["p75"], q["p95"], q["max"], q["mean"]]
                       for q in quantile_rows], "t-quantiles", set(range(2, 11))))
    out.append("</section>")

    out.append('<section id="images"><h2>Objects per image and image sizes</h2><div class="grid">')
    for i, (measure, title) in enumerate((("objects_per_image", "Objects per image"), ("polygon_vertices", "Polygon vertices"),
                                          ("image_width", "Image width (px)"), ("image_height", "Image height (px)"))):
        out.append(f"<div><h3>{_e(title)}</h3>{_histogram(f'chart-{measure}', measure, _bins_over_classes(histograms, measure), _PALETTE[(i + 4) % len(_PALETTE)], known=_known_range(quantile_rows, measure))}</div>")
    records = sum(s["records"] for s in rows.get("summary", []))
    sized = sum(s["images_with_size"] for s in rows.get("summary", []))
    out.append(f'</div><p>Images without a known size: <b data-key="images_without_size">{records - sized:,}</b> of {records:,}.</p></section>')

    out.append('<section id="masks"><h2>Masks</h2>')
    out.append(_table(["split", "records", "masks", "validated", "measured"],
                      [[m["split"], m["records"], m["masks"], m["validated"], m["measured"]] for m in rows.get("masks", [])], "t-masks", {1, 2, 3, 4}))
    failed = _count_by_code(w for w in rows.get("issues", []) if w["group"] == "mask")
    masks = sum(m["masks"] for m in rows.get("masks", []))
    validated = sum(m["validated"] for m in rows.get("masks", []))
    if failed:
        verdict = _bar_chart("chart-mask-failures", sorted(failed.items()), _PALETTE[3])
    elif not validated:
        verdict = (f'<p class="bad" data-key="masks_checked">Not checked: 0 of {masks:,} masks were opened '
                   '(--validate_masks off, or none could be read).</p>' if masks else '<p class="muted" data-key="masks_checked">No masks.</p>')
    else:
        verdict = f'<p class="ok" data-key="masks_checked">None failed: {validated:,} of {masks:,} masks checked.</p>'
    out.append("<h3>Mask checks failed, by code</h3>" + verdict)
    out.append("<h3>Coverage per class (class pixels / image pixels)</h3>")
    out.append(_table(["class", "masks", "min", "median", "p95", "max", "mean"],
                      [[q["name"], q["count"], q["min"], q["p50"], q["p95"], q["max"], q["mean"]] for q in quantile_rows if q["measure"] == "mask_coverage"],
                      "t-mask-coverage", {1, 2, 3, 4, 5, 6}))
    out.append("</section>")

    every_letter = rows.get("dead_letters", [])
    letters = [letter for letter in every_letter if not letter.get("output")]
    out.append('<section id="dead-letters"><h2>Dead letters by code</h2><p class="muted">Lines and records the job refused (errors/).</p>')
    if not letters:
        out.append('<p class="ok">No dead letters: every input item was parsed or is blank.</p>')
    else:
        out.append(_bar_chart("chart-dead-letters", _most_first(_count_by_code(letters)), _PALETTE[3]))
    out.append("" if not letters else _table(["code", "stage", "file", "count", "example line", "message", "raw"],
                      [[letter["code"], letter["stage"], short(letter["uri"]), letter["count"], letter["example_line"], letter["example_message"],
                        _Raw(f"<code class=raw>{_e(' '.join((letter['example_raw'] or '').split())[:240])}</code>")] for letter in letters], "t-dead-letters", {3, 4}))
    out.append("</section>")
    out.append(_refused_section([letter for letter in every_letter if letter.get("output")], outputs, short))

    warnings = rows.get("issues", [])
    out.append('<section id="warnings"><h2>Warnings on kept records, by code</h2>')
    if not warnings:
        out.append('<p class="muted">No warnings.</p>')
    else:
        out.append(_bar_chart("chart-warnings", _most_first(_count_by_code(warnings)), _PALETTE[1]))
    out.append("" if not warnings else _table(["code", "stage", "split", "file", "count", "example line", "message"],
                      [[w["code"], w["stage"], w["split"], short(w["uri"]), w["count"], w["example_line"], w["example_message"]] for w in warnings],
                      "t-warnings", {4, 5}))
    out.append("</section>")

    kept = {f["uri"]: f for f in rows.get("files", [])}
    out.append('<section id="files"><h2>Input files</h2>')
    if prefix:
        out.append(f'<p class="muted">File paths are relative to <code>{_e(storage.redact_url(prefix))}</code>.</p>')
    out.append(_table(["file", "format", "lines", "ok", "dead letters", "blank", "records kept", "objects", "warnings", "reconciled"],
                      [[short(f["uri"]), f["format"], f["lines"], f["ok"], f["dead_letters"], f["blank"], f["records_kept"],
                        kept.get(f["uri"], {}).get("objects", 0), f["warnings"], "yes" if f["reconciled"] else "NO"]
                       for f in rows.get("inputs", [])], "t-files", {2, 3, 4, 5, 6, 7, 8}))
    out.append("</section>")

    annotation = rows.get("annotation", [])
    out.append('<section id="annotation"><h2>Labeling jobs and annotators</h2>')
    out.append(_table(["job", "annotator", "human", "records", "first created", "last created"],
                      [[a["job_name"], a["annotator"], {True: "yes", False: "no"}.get(a["human_annotated"], "unknown"), a["records"],
                        _when(a["first_created"]), _when(a["last_created"])] for a in annotation], "t-annotation", {3}))
    out.append("</section></main>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "".join(out)


def read_tables(stats_root: str, store: storage.Storage) -> dict[str, pa.Table]:
    """stats/*.parquet under `stats_root` -> {name: table}; missing tables are left out."""
    fs, path = store.fs(stats_root)
    tables = {}
    if not fs.exists(path):
        return tables
    for found in sorted(fs.find(path)):
        name = found.rsplit("/", 1)[-1]
        if name.endswith(".parquet"):
            tables[name[: -len(".parquet")]] = pq.read_table(io.BytesIO(store.read_bytes(storage.to_url(fs, found))))
    return tables


def write_report_html(staging: str, summary: dict, store: storage.Storage) -> str:
    """Renders report.html from run.json's summary and staging's stats/; returns its URL."""
    url = storage.join(staging, REPORT_FILE)
    store.write_atomically(url, render(summary, read_tables(storage.join(staging, "stats"), store)).encode())
    return url
