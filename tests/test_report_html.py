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
