"""report.html rendering without a browser: hostile names stay text, a failed run still renders."""

from __future__ import annotations

from html.parser import HTMLParser

from pipelines.report_html import render
from transforms.schema import rows_to_batch
from transforms.stages.stats import StatisticsCombineFn

HOSTILE = '<img src=x onerror="alert(1)">'


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.scripts = [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.scripts += tag == "script"


def tables_of(rows):
    fn = StatisticsCombineFn()
    return fn.extract_output(fn.add_input(fn.create_accumulator(), rows_to_batch(rows)))


def test_hostile_class_names_and_paths_are_escaped():
    rows = [{
        "record_id": "1", "source": {"uri": f"/data/{HOSTILE}.jsonl", "line": 1},
        "image": {"uri": "a.jpg", "width": 100, "height": 50}, "task": "object_detection", "split": "train",
        "objects": [{"label": HOSTILE, "bbox": {"x_min": 0.1, "y_min": 0.1, "x_max": 0.5, "y_max": 0.3}}],
        "issues": [{"code": "BBOX_INVERTED", "severity": "warning", "message": HOSTILE}],
    }]
    page = render({"run_id": "r", "totals": {"lines": 1}, "outputs": {}}, tables_of(rows))
    parsed = _Tags()
    parsed.feed(page)
    assert "img" not in parsed.tags and parsed.scripts == 1  # only the table sorter
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_a_failed_run_without_statistics_still_renders():
    page = render({"run_id": "r", "state": "FAILED", "failure": "the job ended in state FAILED", "exit_code": 5, "totals": {}, "outputs": {}}, {})
    assert "FAILED: the job ended in state FAILED" in page and page.endswith("</html>")


def _lookout_rows(n: int, validated: bool) -> list[dict]:
    return [{
        "record_id": str(i), "source": {"uri": "/data/a.manifest", "line": i + 1},
        "image": {"uri": f"s3://b/{i}.jpg", "width": 576, "height": 768}, "task": "classification", "split": "train",
        "labels": [{"name": "anomaly" if i % 3 else "normal"}],
        "mask": {"uri": f"s3://b/m{i}.png", "validated": validated},
    } for i in range(n)]


def _texts(page: str, css: str) -> list[str]:
    import re

    return re.findall(rf'<text class="{css}"[^>]*>([^<]*)</text>', page)


def test_a_histogram_of_one_value_is_labelled_with_that_value():
    """Images all 576x768 fall in the log bins [562, 596) and [708, 750) ... [750, 794): the labels
    are the values the bins hold (the quantile table's min and max), not the bins' lower edges."""
    page = render({"run_id": "r", "totals": {}, "outputs": {}}, tables_of(_lookout_rows(40, validated=True)))
    width = page[page.index('id="chart-image_width"'):page.index("</svg>", page.index('id="chart-image_width"'))]
    height = page[page.index('id="chart-image_height"'):page.index("</svg>", page.index('id="chart-image_height"'))]
    assert _texts(width, "bin-label") == ["576"] and _texts(height, "bin-label") == ["768"]


def test_masks_never_opened_read_not_checked_and_a_big_peak_keeps_its_digits():
    page = render({"run_id": "r", "totals": {}, "outputs": {}}, tables_of(_lookout_rows(30, validated=False)))
    assert "Not checked: 0 of 30 masks" in page and "None failed" not in page
    checked = render({"run_id": "r", "totals": {}, "outputs": {}}, tables_of(_lookout_rows(30, validated=True)))
    assert "None failed: 30 of 30 masks checked" in checked
    from pipelines.report_html import _histogram

    svg = _histogram("c", "objects_per_image", [(1, 1_000_000), (2, 5)], "#000")
    import re

    x = float(re.search(r'<text class="tick-y" x="([0-9.]+)"[^>]*>1,000,000</text>', svg).group(1))
    assert x - 7 * len("1,000,000") >= 0  # the whole tick fits left of the axis


def test_dead_letters_none_is_said_once_and_an_output_that_landed_nothing_is_flagged():
    outputs = {
        "records": {"expected": 63, "given": 63, "refused": 0, "landed": 63, "files": 1, "bytes": 10, "problems": []},
        "manifests/coco": {"expected": 63, "given": 63, "refused": 63, "landed": 0, "files": 0, "bytes": 0, "problems": []},
        "errors": {"expected": 0, "given": 0, "refused": 0, "landed": 0, "files": 0, "bytes": 0, "problems": []},
    }
    page = render({"run_id": "r", "totals": {}, "outputs": outputs}, tables_of(_lookout_rows(3, validated=True)))
    section = page[page.index('id="dead-letters"'):page.index("</section>", page.index('id="dead-letters"'))]
    assert "No data." not in section and "None." not in section and "No dead letters" in section
    assert 'data-problem="manifests/coco">nothing landed: 0 of 63 rows: its writer refused all 63</span>' in page
    assert 'data-problem="records"' not in page and 'data-problem="errors"' not in page


def test_bar_values_fit_inside_the_chart():
    import re

    from pipelines.report_html import _bar_chart

    svg = _bar_chart("c", [("normal", 559_593), ("anomaly", 240_000)], total=799_593)
    width = float(re.search(r'width="([0-9.]+)"', svg).group(1))
    for x, text in re.findall(r'<text class="value" x="([0-9.]+)"[^>]*>([^<]*)</text>', svg):
        assert float(x) + 7 * len(text) <= width, text
