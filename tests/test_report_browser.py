"""report.html from the demo run, opened in a real browser (Debian's chromium, headless).

Checks what a person would: the charts are drawn and have a size, the numbers on the page are
the ones in stats/*.parquet and run.json, tables sort, and the page logs no error. A
screenshot is left in the test's temp dir.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.normalize_manifests import run

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api")


def test_demo_report_in_a_browser(tmp_path):
    """One job run and one browser for every check (they are costly; xdist would repeat them)."""
    out = tmp_path / "out"
    assert run(["--config", str(REPO / "configs" / "demo.yaml"), "--output", str(out)]) == 0
    stats = {p.stem: pq.read_table(p).to_pylist() for p in (out / "stats").glob("*.parquet")}
    demo = (out, stats, json.loads((out / "run.json").read_text()))
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        tab.on("pageerror", lambda e: problems.append(str(e)))
        tab.on("request", lambda r: problems.append(f"fetched {r.url}") if not r.url.startswith(("file:", "data:")) else None)
        tab.goto((out / "report.html").as_uri(), wait_until="load")
        shot = tmp_path / "report.png"
        tab.screenshot(path=str(shot), full_page=True)
        page = (tab, problems, shot)
        check_no_console_errors_no_network_and_a_screenshot(page)
        check_charts_are_drawn_with_a_size(page)
        check_numbers_shown_equal_the_parquet_stats(page, demo)
        check_tables_sort_on_click(page)
        check_every_chart_label_is_inside_its_chart(page)
        check_bin_labels_hold_the_values_of_their_bins(page, demo)
        tab.goto(_scaled_report(demo, tmp_path).as_uri(), wait_until="load")  # the same page at a million-line scale
        check_every_chart_label_is_inside_its_chart(page)
        browser.close()


def bars(tab, selector):
    return tab.eval_on_selector_all(
        f"{selector} rect.bar",
        "els => els.map(e => {const b = e.getBoundingClientRect();"
        " return {label: e.dataset.label, bin: e.dataset.bin, value: +e.dataset.value, w: b.width, h: b.height,"
        " text: e.nextElementSibling && e.nextElementSibling.classList.contains('value') ? e.nextElementSibling.textContent : null}})",
    )


def check_no_console_errors_no_network_and_a_screenshot(page):
    tab, problems, shot = page
    assert problems == []
    assert shot.stat().st_size > 50_000


def check_charts_are_drawn_with_a_size(page):
    tab, _, _ = page
    for chart in ("chart-box_width", "chart-box_height", "chart-box_area", "chart-box_aspect", "chart-objects_per_image",
                  "chart-image_width", "chart-dead-letters", "chart-refused", "chart-warnings", "chart-classes-train-object"):
        box = tab.locator(f"#{chart}").bounding_box()
        assert box and box["width"] > 300 and box["height"] > 40, chart
        drawn = bars(tab, f"#{chart}")
        assert drawn and all(b["w"] >= 1 and b["h"] >= 1 for b in drawn), chart


def check_numbers_shown_equal_the_parquet_stats(page, demo):
    tab, _, _ = page
    _, stats, run_json = demo
    for key in ("lines", "ok", "dead_letters", "blank", "records_written"):
        assert tab.inner_text(f'[data-key="{key}"]').replace(",", "") == str(run_json["totals"][key])
    for split in {c["split"] for c in stats["classes"]}:
        want = Counter()
        for c in stats["classes"]:
            if c["split"] == split and c["kind"] == "object":
                want[c["name"]] += c["count"]
        if not want:
            continue
        shown = bars(tab, f"#chart-classes-{split}-object")
        assert {b["label"]: b["value"] for b in shown} == dict(want.most_common(20))
        assert all(b["text"].split(" ")[0].replace(",", "") == str(b["value"]) for b in shown)
    for measure in ("box_area", "objects_per_image", "image_width"):
        want = Counter()
        for h in stats["histograms"]:
            if h["measure"] == measure:
                want[str(h["bin"])] += h["count"]
        assert {b["bin"]: b["value"] for b in bars(tab, f"#chart-{measure}")} == dict(want)
    letters, refused = Counter(), Counter()
    for letter in stats["dead_letters"]:
        if letter["output"]:
            refused[f"{letter['output'].split('/', 1)[1]}: {letter['code']}"] += letter["count"]
        else:
            letters[letter["code"]] += letter["count"]
    assert {b["label"]: b["value"] for b in bars(tab, "#chart-dead-letters")} == dict(letters)
    assert sum(letters.values()) == run_json["outputs"]["errors"]["landed"]
    assert {b["label"]: b["value"] for b in bars(tab, "#chart-refused")} == dict(refused)
    landed = {name: e["landed"] for name, e in run_json["outputs"].items() if name.startswith("refused/")}
    assert sum(refused.values()) == sum(landed.values()) > 0
    shown = tab.eval_on_selector_all("#t-refused-outputs tbody tr", "rs => rs.map(r => Array.from(r.cells, c => c.dataset.sort ?? c.textContent))")
    assert {r[0]: (int(r[1]), int(r[2])) for r in shown} == {
        name.split("/", 1)[1]: (run_json["outputs"][name.replace("refused/", "manifests/")]["refused"], n) for name, n in landed.items()
    }
    rows = tab.eval_on_selector_all("#t-files tbody tr", "rs => rs.map(r => Array.from(r.cells, c => c.dataset.sort ?? c.textContent))")
    assert [(int(r[2]), int(r[4]), int(r[6])) for r in rows] == [(i["lines"], i["dead_letters"], i["records_kept"]) for i in stats["inputs"]]
    records = sum(s["records"] for s in stats["summary"])
    assert tab.inner_text('[data-key="images_without_size"]').replace(",", "") == str(records - sum(s["images_with_size"] for s in stats["summary"]))


def check_tables_sort_on_click(page):
    tab, _, _ = page
    column = "#t-files tbody tr td:nth-child(3)"
    tab.click("#t-files th:nth-child(3)")
    ascending = [int(v) for v in tab.eval_on_selector_all(column, "cs => cs.map(c => c.dataset.sort)")]
    assert ascending == sorted(ascending)
    tab.click("#t-files th:nth-child(3)")
    descending = [int(v) for v in tab.eval_on_selector_all(column, "cs => cs.map(c => c.dataset.sort)")]
    assert descending == sorted(ascending, reverse=True) and len(set(ascending)) > 1


def _scaled_report(demo, tmp_path) -> Path:
    """report.html of the demo's statistics with every count times 100,003: long numbers in
    every bar value and axis tick, as a run of a million lines has."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.report_html import read_tables, render
    from transforms.storage import Storage

    out, _, run_json = demo
    tables = read_tables(str(out / "stats"), Storage())
    for name, table in tables.items():
        for column in ("count", "records", "masks", "lines", "ok"):
            if column in table.column_names and pa.types.is_integer(table.schema.field(column).type):
                table = table.set_column(table.column_names.index(column), column, pc.multiply(table[column], 100_003))
        tables[name] = table
    page = tmp_path / "scaled.html"
    page.write_text(render(run_json, tables))
    return page


def check_every_chart_label_is_inside_its_chart(page):
    """No text of any chart (bar values, axis ticks, bin labels) is cut by the chart's edge."""
    tab, _, _ = page
    outside = tab.eval_on_selector_all(
        "svg.chart",
        "svgs => svgs.flatMap(svg => {const box = svg.getBoundingClientRect();"
        " return Array.from(svg.querySelectorAll('text'), t => [svg.id, t.textContent, t.getBoundingClientRect()])"
        "  .filter(([, , r]) => r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)"
        "  .map(([id, text, r]) => `${id}: ${text} [${r.left}, ${r.right}] of [${box.left}, ${box.right}]`);})",
    )
    assert outside == []
    assert tab.eval_on_selector_all("svg.chart text", "ts => ts.length") > 50


def check_bin_labels_hold_the_values_of_their_bins(page, demo):
    """Each bin label names a value or range that holds every value of its bin, measured again
    from records/ (image sizes) or counted (objects per image)."""
    import pyarrow.dataset as ds

    tab, _, _ = page
    out, _, _ = demo
    images = ds.dataset(out / "records", format="parquet", partitioning="hive").to_table(columns=["image", "objects"]).to_pylist()
    values = {
        "image_width": [r["image"]["width"] for r in images if r["image"] and r["image"]["width"]],
        "image_height": [r["image"]["height"] for r in images if r["image"] and r["image"]["height"]],
        "objects_per_image": [len(r["objects"] or []) for r in images],
    }
    checked = 0
    for measure, held in values.items():
        labels = tab.eval_on_selector_all(
            f"#chart-{measure} text.bin-label",
            "ts => ts.map(t => {const bar = t.closest('svg').querySelector(`rect.bar[data-bin=\"${t.dataset.bin}\"]`);"
            " return {text: t.textContent, lower: bar ? +bar.dataset.lower : null, upper: bar ? +bar.dataset.upper : null}})",
        )
        assert labels, measure
        for label in labels:
            in_bin = [v for v in held if label["lower"] <= v < label["upper"]]
            assert in_bin, (measure, label)
            low, _, high = label["text"].replace(",", "").partition("–")
            low, high = float(low), float(high or low)
            assert all(low <= v <= high for v in in_bin), (measure, label, sorted(set(in_bin)))
            checked += 1
    assert checked >= 3
