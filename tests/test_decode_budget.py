"""Many large masks at once: decoded pixels in flight are bounded per process, measured as the
peak resident memory of a real process checking real RGBA PNGs on 8 threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from transforms.checks.pool import PixelBudget

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from transforms import storage
    from transforms.checks.pool import BoundedRunner, Task
    from transforms.file_checks import FileChecker, FileCheckConfig

    side, count, budget, folder = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    rows = []
    for i in range(count):  # the PNGs were written by the test: nothing large was held before the checks
        rows.append({"source": {"uri": str(folder / "in.manifest")}, "image": {"width": side, "height": side},
                     "mask": {"uri": str(folder / f"{i}.png"), "color_map": [{"index": 1, "class_name": "s", "hex_color": "#2ca02c"}]}})
    config = FileCheckConfig.from_values({"io_concurrency": count, "mask": {"decode_budget_pixels": budget, "max_pixels": side * side}})
    checker = FileChecker(config, storage.Storage())
    def status_kib(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])

    # the peak is measured from here: writing 5 to clear_refs resets VmHWM to the current RSS,
    # so what the imports allocated and freed (a peak of its own) does not hide the decodes'
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = status_kib("VmRSS")
    out = BoundedRunner(count, 120).run([Task(r) for r in rows], checker.check, lambda task, limit: None)
    assert all(row["mask"]["validated"] and row["mask"]["class_pixels"][0]["pixels"] == 200 for row, _, _ in out)
    print(status_kib("VmHWM") - before, checker.budget.peak)
    """
)


def _grow_kib(tmp_path: Path, budget: int, side=2000, count=8) -> tuple[int, int]:
    import io

    import numpy as np
    from PIL import Image

    folder = tmp_path / str(budget)
    folder.mkdir()
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[10:20, 10:30] = (44, 160, 44, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    for i in range(count):
        (folder / f"{i}.png").write_bytes(buffer.getvalue())
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(side), str(count), str(budget), str(folder)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    grown, peak = done.stdout.split()
    return int(grown), int(peak)


def test_a_pixel_budget_bounds_peak_memory_of_concurrent_decodes(tmp_path):
    unbounded, unbounded_peak = _grow_kib(tmp_path, 10**9)
    bounded, bounded_peak = _grow_kib(tmp_path, 4_000_000)  # one 2000x2000 mask at a time
    assert unbounded_peak > 4_000_000 and bounded_peak == 4_000_000
    assert bounded < 0.6 * unbounded, (bounded, unbounded)


def test_a_mask_larger_than_the_budget_runs_alone_and_is_not_refused():
    budget = PixelBudget(100)
    assert budget.acquire(500) == 100 and budget.in_use == 100
    budget.release(100)
    assert budget.acquire(60) == 60 and budget.acquire(40) == 40 and budget.in_use == 100


@pytest.mark.parametrize("pixels", [0, -5])
def test_nothing_to_decode_takes_nothing(pixels):
    budget = PixelBudget(10)
    assert budget.acquire(pixels) == 0
