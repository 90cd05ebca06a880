"""Owner-only files everywhere (docs/privacy.md): after a scan, ``review apply`` (with training cases)
and ``evaluate -o``, every file under OUT and under the other folders cacpipe wrote is 0600 and every
folder 0700, under the common umask 022 (issue 27, item 9: labels_corrected and evaluate files were 0644)."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from export_faults import MIN_SLICES, N_SLICES

from cacpipe.cli import cli
from cacpipe.phantom.demo_export import write_demo_export


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _loose(root: Path) -> list[str]:
    """Paths under ``root`` (itself included) whose mode gives anything to group or others."""
    bad = []
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        mode = stat.S_IMODE(p.stat().st_mode)
        want = 0o700 if p.is_dir() else 0o600
        if mode != want:
            bad.append(f"{p.relative_to(root.parent)} {mode:o}")
    return bad


def test_every_output_is_owner_only(tmp_path, umask_022):
    export, truth, out = tmp_path / "export", tmp_path / "truth", tmp_path / "out"
    write_demo_export(export, truth_dir=truth, shape_yx=(64, 64), pixel_mm=400.0 / 64, n_slices=N_SLICES)
    r = CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                 "--analyse", "export_faults:review_analyse", "--no-progress"])
    assert r.exit_code == 0, r.output
    entries = {e["patient_id"]: e for e in json.loads((out / "manifest.json").read_text())["studies"].values()}
    e = entries["DEMO003"]
    res = json.loads((out / e["result"]).read_text())
    corrections = out / "corrections"
    corrections.mkdir(mode=0o700)
    doc = {"schema": "cacpipe.corrections/1", "reader": "dr_a", "time": "2026-12-01T10:00:00Z",
           "study_uid": e["study_uid"], "changes": [{"op": "delete", "lesion": res["lesions"][0]["name"]}]}
    f = corrections / "c.json"
    f.write_text(json.dumps(doc))
    f.chmod(0o600)  # the reader's own download: the user's file, not cacpipe's to change
    cases = tmp_path / "cases"
    r = CliRunner().invoke(cli, ["review", "apply", str(out), "--training-cases", str(cases)])
    assert r.exit_code == 0, r.output
    assert (out / e["result"]).with_name("labels_corrected.nii.gz").exists()

    ratings = tmp_path / "ratings.csv"
    with ratings.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rater", "patient_id", "study_uid", "artery", "rating", "comment", "timestamp"])
        for pid, ent in entries.items():
            for rater, rating in (("a", "excellent"), ("b", "minor error")):
                w.writerow([rater, pid, ent["study_uid"], "RCA", rating, "", "2026-12-01T10:00:00Z"])
    r = CliRunner().invoke(cli, ["evaluate", str(out), str(truth), "--no-lesions", "--ratings", str(ratings),
                                 "-o", str(out / "evaluation")])
    assert r.exit_code == 0, r.output
    assert (out / "evaluation" / "evaluation.json").exists() and (out / "evaluation" / "report.html").exists()
    r = CliRunner().invoke(cli, ["evaluate", str(out), str(truth), "--no-lesions", "-o", str(tmp_path / "eval2")])
    assert r.exit_code == 0, r.output

    loose = _loose(out) + _loose(cases) + _loose(tmp_path / "eval2")
    assert loose == [], "\n".join(loose)
