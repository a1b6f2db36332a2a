"""Settings declared once and read as validated, the profile resolved once, per launch.

The `validate` section is declared once (transforms/file_checks.py: ValidateConfig, MaskConfig)
and the file checks read that validated object itself, not a copy of its fields; the profile
it names becomes a Profile in one place (FileCheckConfig.of), once per launch, and
ValidateRecords and CheckFiles get that one object. (Inputs listed once per launch:
tests/test_launch_checks.py, test_inputs_are_listed_once_per_launch.)
"""

from __future__ import annotations

import dataclasses
import json

from pipelines.normalize_manifests import file_check_config, run
from pipelines.options import parse_launch
from transforms.checks import profiles
from transforms.file_checks import FileCheckConfig

LINE = json.dumps({"source-ref": "s3://b/a.jpg", "class": 0, "class-metadata": {"class-name": "cat", "type": "groundtruth/image-classification", "job-name": "j", "human-annotated": "yes", "confidence": 1}})


def test_the_file_checks_read_the_validated_section_itself(tmp_path):
    (tmp_path / "a.manifest").write_text(LINE + "\n")
    job = parse_launch(["--input", str(tmp_path / "a.manifest"), "--output", str(tmp_path / "out"), "--validation_profile", "rekognition"]).job
    checks = file_check_config(job)
    assert checks.settings is job.validate  # the section as validated, not a copy of its fields
    assert checks.profile is profiles.PROFILES["rekognition"]
    # what FileCheckConfig adds to the section is derived, never a setting of its own
    assert [field.name for field in dataclasses.fields(FileCheckConfig)] == ["settings", "profile", "allowed_roots"]


def test_the_profile_is_resolved_once_per_launch(tmp_path, monkeypatch):
    (tmp_path / "a.manifest").write_text(LINE + "\n")
    resolved = []
    real = profiles.get_profile
    monkeypatch.setattr(profiles, "get_profile", lambda name: resolved.append(name) or real(name))
    argv = ["--input", str(tmp_path / "a.manifest"), "--output", str(tmp_path / "out"), "--runner=FnApiRunner", "--quiet", "--validation_profile", "rekognition"]
    assert run(argv) == 0
    assert resolved == ["rekognition"]
