"""A worker process imports what its stages use: asking for one format loads that format's
module alone, and modules that only some runs need (OpenCV, Pillow, pycocotools) wait until
they are used. The registry as a whole still lists every format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ON_DEMAND = ("cv2", "PIL", "pycocotools", "label_studio_sdk")


def _modules_after(code: str) -> set[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_a_worker_parsing_ground_truth_loads_no_other_format_and_no_image_library():
    loaded = _modules_after(
        "import transforms.stages.read, transforms.stages.normalize, transforms.stages.validate, transforms.stages.check_files,"
        " transforms.stages.split, transforms.stages.write, transforms.stages.stats\n"
        "from transforms.formats.base import get_format\n"
        "assert get_format('sagemaker').name == 'sagemaker'"
    )
    assert "transforms.formats.sagemaker.format" in loaded
    others = {"transforms.formats.label_studio", "transforms.formats.azure_automl", "transforms.formats.yolo", "transforms.formats.jsonl"}
    assert not others & loaded
    assert not {name.split(".")[0] for name in loaded} & set(ON_DEMAND)


def test_the_whole_registry_is_still_there_when_listed_or_detected():
    loaded = _modules_after(
        "from transforms.formats.base import format_names, detect_format, get_format\n"
        "assert format_names() == ['azure_automl', 'coco', 'jsonl', 'label_studio', 'sagemaker', 'yolo'], format_names()\n"
        "assert detect_format([{'source-ref': 's3://b/a.jpg', 'label': 1, 'label-metadata': {'class-name': 'x'}}]) == 'sagemaker'"
    )
    assert "transforms.formats.label_studio" in loaded


def test_an_unknown_format_is_refused_with_every_known_name():
    loaded = _modules_after(
        "from transforms.formats.base import get_format, UnknownFormatError\n"
        "try:\n    get_format('abc')\nexcept UnknownFormatError as e:\n    assert 'label_studio' in str(e) and 'yolo' in str(e), e\n"
        "else:\n    raise SystemExit('no error')"
    )
    assert "transforms.formats.yolo" in loaded


def test_images_masks_and_polygons_still_work_with_their_libraries_imported_on_use():
    loaded = _modules_after(
        "import io\nimport numpy as np\n"
        "from transforms.checks import contours, images, masks\n"
        "from transforms.formats.sagemaker import brush_masks\n"
        "from transforms.formats.coco.document import coco_rle, rle_box\n"
        "png = brush_masks.png_bytes(np.array([[0, 1], [1, 1]], np.uint8), [1])\n"
        "assert masks.decode(png).size == (2, 2)\n"
        "assert images.header_from_bytes(png).width == 2\n"
        "assert contours.trace(np.ones((4, 4), bool))\n"
        "assert rle_box(coco_rle(np.ones((3, 5), bool))) == [0.0, 0.0, 5.0, 3.0]\n"
        "assert brush_masks.class_colour(1) == '#1f77b4' and len({brush_masks.class_colour(i) for i in range(1, 256)}) == 255"
    )
    assert {"cv2", "PIL", "pycocotools"} <= loaded


_WORKER_PROBE = """
import json, sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from pipelines import runners

def seen(_):
    import sys
    import pyarrow, pyarrow.compute
    pyarrow.compute.fill_null(pyarrow.array([1.0, None]), 0)  # a conversion of a Python value: pyarrow looks for pandas
    return json.dumps({"argv": sys.orig_argv, "pool": pyarrow.default_memory_pool().backend_name, "skipped": sorted(m for m in ("azure.storage.blob", "google.cloud.storage", "pandas") if m in sys.modules)})

options = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=1"])
with runners.new_pipeline(options) as pipeline:
    pipeline | beam.Create([0]) | beam.Map(seen) | beam.Map(lambda line, path=sys.argv[1]: open(path, "w").write(line))
"""


def test_local_worker_processes_start_without_the_cloud_connectors_no_stage_uses(tmp_path):
    """The FnApiRunner's worker processes run pipelines/sdk_worker_main.py: Beam's worker, with
    Azure, GCS, Pub/Sub and pandas left out of its import (about 1 CPU s a worker), and Arrow's
    jemalloc pool."""
    out = tmp_path / "seen.json"
    done = subprocess.run([sys.executable, "-c", _WORKER_PROBE, str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(out.read_text())
    assert seen["argv"][1:] == ["-m", "pipelines.sdk_worker_main"], seen["argv"]
    assert seen["skipped"] == []
    if sys.platform.startswith("linux"):  # Arrow's jemalloc pool: less memory held per worker
        assert seen["pool"] == "jemalloc"


def test_modules_skipped_while_beam_imports_are_importable_afterwards():
    loaded = _modules_after(
        "from pipelines.sdk_worker_main import import_beam_worker\n"
        "worker = import_beam_worker()\n"
        "assert callable(worker.main) and 'azure.storage.blob' not in sys.modules and 'pandas' not in sys.modules\n"
        "import pyarrow\n"
        "assert pyarrow.array([1, None]).null_count == 1 and 'pandas' not in sys.modules\n"
        "import pandas, google.cloud.storage, apache_beam.io.gcp.gcsio\n"
        "assert len(pyarrow.table({'a': [1, 2]}).to_pandas()) == 2  # pyarrow still finds pandas when it needs it\n"
    )
    assert {"pandas", "google.cloud.storage", "apache_beam.runners.worker.sdk_worker_main"} <= loaded


def test_other_runners_keep_their_own_workers():
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines import runners

    in_process = runners.new_pipeline(PipelineOptions(["--runner=FnApiRunner"]))
    assert type(in_process.runner).__name__ == "FnApiRunner"
    two = runners.new_pipeline(PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]))
    assert isinstance(two.runner, runners.LocalWorkersFnApiRunner)


def test_a_local_run_imports_beam_without_the_connectors_and_any_other_run_with_them():
    from pipelines.beam_import import runs_locally

    assert runs_locally([]) and runs_locally(["--config", "configs/local.yaml"]) and runs_locally(["--runner=FnApiRunner"])
    assert runs_locally(["--config=configs/dataflow.yaml", "--runner", "FnApiRunner"])  # the flag wins, as in the launch
    assert not runs_locally(["--runner=PrismRunner"]) and not runs_locally(["--config=configs/dataflow.yaml"])
    assert not runs_locally(["--config", "configs/local.yaml", "--runner=DataflowRunner"])
    assert not runs_locally(["--config", "s3://bucket/run.yaml"]) and not runs_locally(["--config", "missing.yaml"])
    lean = _modules_after("from pipelines.beam_import import import_lean\nimport_lean()\nimport pipelines.normalize_manifests")
    assert not {"pandas", "azure.storage.blob", "google.cloud.storage"} & lean
    full = _modules_after("import pipelines.normalize_manifests")
    assert {"pandas", "azure.storage.blob", "google.cloud.storage"} <= full
