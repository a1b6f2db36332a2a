"""End-to-end runs of the job (FnApiRunner, in process), every output read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from benchmarks.synthetic import write_manifest
from pipelines.normalize_manifests import run
from tests.conftest import need_shared_data
from tests.format_contract import canonical
from transforms import errors
from transforms.formats.base import ParseContext, get_format
from transforms.label_jobs import select_label_jobs

pytestmark = pytest.mark.e2e  # runs the whole job: deselect with -m "not e2e" for the fast subset

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "sagemaker"
RUNNER = "--runner=FnApiRunner"


def read_records(out: Path):
    return ds.dataset(out / "records", format="parquet", partitioning="hive").to_table()


def read_run(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def read_dead_letters(out: Path) -> list[dict]:
    return [orjson.loads(line) for path in sorted((out / "errors").glob("*.jsonl")) for line in path.read_bytes().splitlines()]


def test_samples_end_to_end(tmp_path):
    out = tmp_path / "out"
    code = run(["--input", str(SAMPLES / "*.manifest"), "--input", str(SAMPLES / "*.jsonl"), "--output", str(out), "--output_format", "sagemaker", RUNNER, "--validate_masks=false"])
    assert code == 0
    summary = read_run(out)
    files = {Path(f["uri"]).name: f for f in summary["files"]}
    broken = files["broken.manifest"]
    assert (broken["lines"], broken["ok"], broken["dead_letters"], broken["blank"]) == (11, 1, 8, 2)
    assert broken["dead_letter_codes"]["normalize"] == {
        "INVALID_JSON": 1, "NOT_AN_OBJECT": 1, "INVALID_UTF8": 1, "MISSING_SOURCE_REF": 1,
        "MISSING_LABEL_METADATA": 2, "INVALID_FIELD_TYPE": 2,
    }
    assert all(f["reconciled"] for f in summary["files"]) and summary["totals"]["reconciled"]
    assert files["lookout-for-vision.manifest"]["records"] == 10
    table = read_records(out)
    assert table.num_rows == summary["totals"]["records"] == 18
    assert set(table.column("split").to_pylist()) <= {"train", "validation", "test"}
    letters = read_dead_letters(out)
    assert len(letters) == 8
    assert {lab["line"] for lab in letters} == {1, 2, 3, 4, 5, 6, 7, 8}
    assert all(set(lab) == set(errors.DEAD_LETTER_FIELDS) for lab in letters)
    assert all(lab["output"] is None for lab in letters)  # true dead letters; a writer's refusals go to refused/
    # The manifests read back through the format give the same rows.
    fmt = get_format("sagemaker")
    written = sorted((out / "manifests" / "sagemaker").glob("split=*/part-*-of-*.manifest"))
    assert written
    ctx = ParseContext(uri="x", base_uri="/nowhere")
    again = [r for path in written for line in path.read_bytes().splitlines() for r in fmt.parse(orjson.loads(line), ctx).rows]
    # (with the label job the writers take from a chained line: transforms/label_jobs.py; its
    # `annotation` then comes from that job's metadata)
    chosen = [select_label_jobs(row)[0] for row in table.to_pylist()]
    chained = {row["image"]["uri"] for row, original in zip(chosen, table.to_pylist()) if row is not original}
    assert chained  # the samples hold one chained line
    expected, found = canonical(chosen), canonical(again)
    for row in expected + found:
        if row["image"]["uri"] in chained:
            row["annotation"] = None
    assert sorted(map(repr, found)) == sorted(map(repr, expected))
    assert not list(out.rglob(".labelbeam-tmp")), "temporary files are cleaned up"


def test_realdata_lookout_template(tmp_path):
    manifest = need_shared_data("realdata", "lookout-for-vision-getting-started", "manifests", "template.manifest")
    out = tmp_path / "out"
    assert run(["--input", str(manifest), "--output", str(out), RUNNER, "--validate_masks=false"]) == 0
    table = read_records(out)
    assert table.num_rows == 63
    labels = [row[0]["name"] for row in table.column("labels").to_pylist()]
    assert labels.count("anomaly") == 32 and labels.count("normal") == 31
    masks = [m["uri"] for m in table.column("mask").to_pylist() if m]
    assert len(masks) == 32
    assert all(m.startswith(str(manifest.parent) + "/mask-images/") for m in masks)
    summary = read_run(out)
    assert summary["totals"]["dead_letters"] == 0 and summary["totals"]["lines"] == 63
    assert summary["totals"]["reconciled"]


def test_max_error_rate_exits_non_zero_after_writing(tmp_path):
    out = tmp_path / "out"
    code = run(["--input", str(SAMPLES / "broken.manifest"), "--output", str(out), RUNNER, "--max_error_rate=0.5"])
    assert code == 1
    assert (out / "run.json").exists() and len(read_dead_letters(out)) == 8
    assert read_run(out)["error_rate"] == pytest.approx(8 / 11, abs=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "nothing/here/*.manifest"], "no input file matches"),
        (["--format", "yolo"], "--format): 'yolo' is not one of azure_automl, coco, label_studio, sagemaker"),
        (["--output_format", "nope"], "--output_format): 'nope' is not one of"),
        (["--shard_sise=4KB"], "unknown option --shard_sise; did you mean --shard_size?"),
        (["--shard_size=lots"], "job.read.shard_size (--shard_size): not a size"),
        (["--max_error_rate=2"], "job.max_error_rate (--max_error_rate): must be at most 1"),
        (["--split_ratios=train"], "--split_ratios"),
        (["--mask_alpha_threshold=300"], "job.validate.mask.alpha_threshold (--mask_alpha_threshold): must be at most 255"),
        (["--validation_profile=coco"], "(--validation_profile): 'coco' is not one of none, lookout_for_vision"),
        (["--format_option", "label_studio.region_tolerance=-1"], "job.formats.label_studio.region_tolerance: must be at least 0"),
        (["--format_option", "region_tolerance=1"], "--format_option takes FORMAT.KEY=VALUE"),
        (["--format_option", "cvat.x=1"], "job.formats: unknown format 'cvat'"),
        (["--format_option", "coco.x=1"], "job.formats.coco: unknown setting 'x'"),
    ],
)
def test_bad_launches_fail_with_one_line_before_any_work(tmp_path, capsys, args, message):
    base = ["--input", str(SAMPLES / "broken.manifest"), "--output", str(tmp_path / "o"), RUNNER]
    assert run(base + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o" / "run.json").exists()


def test_earlier_outputs_are_replaced_only_with_overwrite_and_other_files_stay(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["--input", str(SAMPLES / "lookout-for-vision.manifest"), "--output", str(out), RUNNER]
    assert run(args) == 0  # a folder with other files in it is fine
    first = read_run(out)["run_id"]
    assert run(args) == 2
    assert "holds the outputs of an earlier run; pass --overwrite" in capsys.readouterr().err
    assert read_run(out)["run_id"] == first
    assert run(args + ["--overwrite"]) == 0
    assert read_run(out)["run_id"] != first
    assert (out / "keep.txt").read_text() == "mine" and (out / "_SUCCESS").exists()
    assert sorted(p.name for p in out.iterdir()) == [".labelbeam", "_SUCCESS", "keep.txt", "records", "report.html", "run.json", "stats"]  # no dead letters: no errors/


def test_config_files_merge_and_flags_win(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text(f"pipeline_options:\n  runner: FnApiRunner\njob:\n  input: [{SAMPLES / 'broken.manifest'}]\n  output: {tmp_path / 'from-yaml'}\n  max_error_rate: 0.9\n")
    second = tmp_path / "b.yaml"
    second.write_text("job:\n  max_error_rate: 0.1\n")
    assert run(["--config", str(first), "--config", str(second)]) == 1  # the later file wins
    assert run(["--config", str(first), "--config", str(second), "--output", str(tmp_path / "cli"), "--max_error_rate=0.95"]) == 0
    summary = read_run(tmp_path / "cli")
    assert summary["options"]["job"]["max_error_rate"] == 0.95
    bad = tmp_path / "bad.yaml"
    bad.write_text("job:\n  shard_sise: 4KB\n")
    assert run(["--config", str(bad), "--input", "x", "--output", "y"]) == 2


def test_secrets_are_redacted_in_run_json(tmp_path):
    out = tmp_path / "out"
    options = json.dumps({"s3": {"key": "AKIAEXAMPLE", "secret": "very-secret", "client_kwargs": {"region_name": "eu-west-1"}}})
    assert run(["--input", str(SAMPLES / "lookout-for-vision.manifest"), "--output", str(out), RUNNER, "--storage_options", options]) == 0
    text = (out / "run.json").read_text()
    assert "very-secret" not in text and "AKIAEXAMPLE" not in text and "eu-west-1" in text


def test_sharded_read_equals_one_shard_read(tmp_path):
    """200,000 lines read in 50+ shards give the same records, line numbers and offsets."""
    manifest = tmp_path / "big.manifest"
    write_manifest(str(manifest), 200_000, broken_every=997, blank_every=1009)
    size = manifest.stat().st_size
    results = {}
    for name, shard_size in (("one", size + 1), ("many", size // 60)):
        out = tmp_path / name
        assert run(["--input", str(manifest), "--output", str(out), RUNNER, f"--shard_size={shard_size}", "--validate_masks=false"]) == 0
        table = read_records(out).select(["record_id", "source"])
        ids = table.column("record_id").to_pylist()
        lines = pc.struct_field(table.column("source"), "line").to_pylist()
        offsets = pc.struct_field(table.column("source"), "offset").to_pylist()
        letters = sorted((lab["line"], lab["offset"], lab["code"]) for lab in read_dead_letters(out))
        results[name] = (sorted(zip(lines, offsets, ids)), letters, read_run(out)["files"][0])
    assert results["many"] == results["one"]
    records, letters, counts = results["one"]
    assert counts["lines"] == 200_000 and counts["reconciled"]
    assert len(letters) == counts["dead_letters"] > 0 and counts["blank"] > 0
    # Line numbers are 1-based file lines, offsets the byte where the line starts.
    with open(manifest, "rb") as handle:
        for _, offset, _ in records[:: 20_000]:
            handle.seek(offset)
            assert handle.readline().startswith(b'{"source-ref"')
    assert records[0][:2] == (1, 0)


def test_console_script_runs_the_demo_config(tmp_path):
    out = tmp_path / "demo"
    script = Path(sys.executable).with_name("labelbeam")
    done = subprocess.run(
        [str(script), "--config", str(REPO / "configs" / "demo.yaml"), "--output", str(out), RUNNER],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "reconciled" in done.stdout and str(out / "run.json") in done.stdout
    assert read_run(out)["totals"]["reconciled"]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("output: [a, b]", "job.output (--output): expected a string"),
        ("validate: {mask: {alpha_threshold: abc}}", "job.validate.mask.alpha_threshold (--mask_alpha_threshold): expected an integer"),
        ("read: {shard_size: true}", "job.read.shard_size (--shard_size): not a size"),
        ("read: {batch_size: 1.9}", "job.read.batch_size (--batch_size): expected an integer"),
        ("split: {ratios: {train: .inf}}", "job.split.ratios (--split_ratios)"),
        ("split: {ratios: {train/2024: 1}}", "a split name is letters"),
        ("formats: {label_studio: {annotations: newest}}", "job.formats.label_studio.annotations: 'newest' is not one of all, latest, ground_truth"),
        ("shard_size: 4KB", "job: unknown setting 'shard_size'"),
        ("read: {shard_sise: 4KB}", "job.read: unknown setting 'shard_sise'; did you mean 'shard_size'?"),
    ],
)
def test_yaml_values_of_the_wrong_type_fail_in_one_line(tmp_path, capsys, setting, message):
    config = tmp_path / "c.yaml"
    config.write_text(f"job:\n  input: [{SAMPLES / 'broken.manifest'}]\n  output: {tmp_path / 'o'}\n  {setting}\n")
    assert run(["--config", str(config), RUNNER]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_yaml_false_for_a_beam_flag_is_the_flag_left_off(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"pipeline_options:\n  runner: FnApiRunner\n  save_main_session: false\njob:\n  input: [{SAMPLES / 'lookout-for-vision.manifest'}]\n  output: {tmp_path / 'o'}\n")
    assert run(["--config", str(config)]) == 0


def test_output_holding_the_inputs_is_refused_even_with_overwrite(tmp_path, capsys):
    data = tmp_path / "out" / "data"
    data.mkdir(parents=True)
    (data / "m.manifest").write_bytes((SAMPLES / "broken.manifest").read_bytes())
    assert run(["--input", str(data / "m.manifest"), "--output", str(tmp_path / "out"), "--overwrite", RUNNER]) == 2
    assert "is inside --output" in capsys.readouterr().err
    assert (data / "m.manifest").exists()


def test_a_wrong_runner_fails_before_the_output_is_touched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run(["--input", str(SAMPLES / "broken.manifest"), "--output", str(out), "--overwrite", "--runner=Nope"]) == 2
    assert "Unexpected pipeline runner: Nope" in capsys.readouterr().err
    assert (out / "keep.txt").exists()


def test_truncated_gzip_is_reported_incomplete(tmp_path):
    import gzip

    data = b"".join(b'{"source-ref": "s3://b/%06d.jpg"}\n' % i for i in range(20_000))
    packed = gzip.compress(data)
    source = tmp_path / "cut.manifest.gz"
    source.write_bytes(packed[: len(packed) * 3 // 4])
    out = tmp_path / "out"
    assert run(["--input", str(source), "--output", str(out), RUNNER, "--validate_masks=false"]) == 4
    assert not out.joinpath("run.json").exists()  # an incomplete run publishes nothing
    (failed,) = (out / ".labelbeam" / "failed").iterdir()
    (entry,) = read_run(failed)["files"]
    assert entry["ok"] > 10_000 and entry["dead_letter_codes"]["read"] == {"READ_FAILED": 1}
    assert entry["complete"] is False and entry["reconciled"] is False
    assert read_run(failed)["totals"]["reconciled"] is False
    # --allow_incomplete publishes what was read, without _SUCCESS, and still exits 4.
    assert run(["--input", str(source), "--output", str(out), RUNNER, "--validate_masks=false", "--allow_incomplete"]) == 4
    assert read_run(out)["incomplete_files"][0]["uri"] == str(source) and not (out / "_SUCCESS").exists()


def test_a_run_that_keeps_no_record_is_not_a_success_and_leaves_a_readable_empty_dataset(tmp_path, capsys):
    """Input with lines and not one record kept: exit 1 without _SUCCESS, one line saying why."""
    source = tmp_path / "all-bad.manifest"
    source.write_bytes(b'{"broken\n["not an object"]\n')
    out = tmp_path / "out"
    assert run(["--input", str(source), "--output", str(out), "--format=sagemaker", RUNNER]) == 1
    assert not (out / "_SUCCESS").exists()
    table = read_records(out)
    assert table.num_rows == 0 and "record_id" in table.column_names
    summary = read_run(out)
    assert summary["totals"]["dead_letters"] == 2 and summary["exit_code"] == 1 and summary["no_records_kept"]
    said = [line for line in capsys.readouterr().out.splitlines() if "NO RECORDS" in line]
    assert len(said) == 1 and "2 input items" in said[0]
    # a CSV: every line a dead letter; blank lines alone are not input
    csv = tmp_path / "table.csv"
    csv.write_text("image,label\na.jpg,cat\nb.jpg,dog\n")
    assert run(["--input", str(csv), "--output", str(tmp_path / "csv"), RUNNER]) == 1
    assert not (tmp_path / "csv" / "_SUCCESS").exists()
    blank = tmp_path / "blank.manifest"
    blank.write_text("\n\n")
    assert run(["--input", str(blank), "--output", str(tmp_path / "blank"), "--format=sagemaker", RUNNER]) == 0


def test_the_summary_says_what_each_number_counts(tmp_path, capsys):
    """A Label Studio export is a JSON array of tasks, not lines, and one task gives a record per
    annotation and per prediction: the summary names items by kind and says why records > ok."""
    labels = REPO / "samples" / "label_studio"
    out = tmp_path / "out"
    code = run(["--input", str(labels / "export.json"), str(SAMPLES / "ground-truth.jsonl"), "--output", str(out), RUNNER,
                "--validate_masks=false", "--quiet", "--output_format=sagemaker"])
    assert code == 0
    printed = capsys.readouterr().out
    totals = read_run(out)["totals"]
    files = {Path(f["uri"]).name: f for f in read_run(out)["files"]}
    elements, lines = files["export.json"]["lines"], files["ground-truth.jsonl"]["lines"]
    assert f"input: {totals['lines']} items in 2 file(s) = {lines} lines + {elements} JSON-array elements" in printed
    assert "input lines" not in printed
    assert totals["records"] > totals["ok"]  # the export has tasks with annotations and predictions
    assert f"records: {totals['records']} from the {totals['ok']} parsed items (an item can give several:" in printed
    refused = read_run(out)["outputs"]["manifests/sagemaker"]["refused"]
    assert refused > 0 and f"{refused} refused: the format cannot hold them (still in records/) -> {out / 'refused' / 'sagemaker'}" in printed
