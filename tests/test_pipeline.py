"""End to end: a phantom PACS export through the real pipeline (stage 1 fallback locator,
the shipped phantom demo nnU-Net model, quantification, review outputs) via the real commands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from cacpipe import flags as F
from cacpipe.cli import cli
from cacpipe.config import Settings
from cacpipe.ingest import LoadedSeries
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from cacpipe.phantom import PhantomConfig, generate
from cacpipe.pipeline import analyse_series
from cacpipe.quant.quantify import quantify
from cacpipe.record import StudyIdentity
from cacpipe.volume import Volume

pytestmark = pytest.mark.xdist_group("pipeline")


@pytest.fixture(scope="session")  # once per test process: xdist may interleave other modules
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    res = CliRunner().invoke(cli, ["demo", str(out), "--no-progress"])
    return out, res


def test_demo_command_scores_every_study_and_skips_the_rest_with_reasons(demo_run):
    out, res = demo_run
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "results" / "manifest.json").read_text())
    done = [s for s in manifest["studies"].values() if s["status"] == "done"]
    assert len(done) == 3
    rows = list(csv.DictReader((out / "results" / "cohort.csv").open()))
    assert sorted(r["patient_id"] for r in rows) == ["DEMO001", "DEMO002", "DEMO003"]
    for r in rows:
        flags = r["flags"].split(";")
        assert F.DEMO_MODEL in flags and F.FALLBACK_HEART_LOCATOR in flags  # the result says what ran
        for a in ARTERIES:  # every artery was found, so numbers are present (not silent blanks)
            assert r[f"{a}_assessed"] == "True" and r[f"{a}_agatston"] != ""
    skipped = json.dumps(manifest)
    assert "localizer" in skipped.lower() and "contrast" in skipped.lower()
    assert (out / "results" / "index.html").exists()
    assert (out / "truth" / "DEMO001.json").exists()


def test_result_numbers_match_the_written_label_map_on_the_original_grid(demo_run):
    out, _ = demo_run
    for result_path in (out / "results").glob("DEMO00*/*/result.json"):
        study = result_path.parent
        result = json.loads(result_path.read_text())
        labels = Volume.read(study / "labels.nii.gz")
        assert tuple(result["ct"]["shape_zyx"]) == labels.shape
        assert np.allclose(result["ct"]["spacing_zyx"], labels.spacing_zyx)
        # the map is on the acquired grid; re-quantifying it with the CT reproduces the result
        truth = json.loads((out / "truth" / f"{result['study']['patient_id']}.json").read_text())
        ph = generate(PhantomConfig(**{k: v for k, v in truth["config"].items() if k != "plaques"},
                                    plaques=tuple(_plaques(truth["config"]["plaques"]))))
        assert ph.ct.same_grid(labels, tol=1e-3)
        again = quantify(ph.ct, labels)
        for a in ARTERIES:
            assert result["arteries"][a]["agatston"] == pytest.approx(again.arteries[a].agatston)
            assert result["arteries"][a]["calcium_volume_mm3"] == pytest.approx(again.arteries[a].calcium_volume_mm3)
        assert [les["name"] for les in result["lesions"]] == [les.name for les in again.lesions]
        # the segmentation lies on the phantom's coronary arteries, not elsewhere
        whole = np.isin(labels.array, [ARTERY_ID[a] for a in ARTERIES] + [CALCIUM_ID[a] for a in ARTERIES])
        truth_whole = np.isin(ph.labels.array, list(range(1, 7)))
        assert (whole & truth_whole).sum() / max(whole.sum(), 1) > 0.3
        for key in ("review_html", "seg", "sr"):
            assert (study / result["outputs"][key]).exists()
        seg = pydicom.dcmread(study / result["outputs"]["seg"])
        assert seg.PatientID == result["study"]["patient_id"]
        assert seg.StudyInstanceUID == result["study"]["study_uid"]


def test_calcium_found_in_the_calcified_phantom_and_total_is_consistent(demo_run):
    out, _ = demo_run
    rows = {r["patient_id"]: r for r in csv.DictReader((out / "results" / "cohort.csv").open())}
    assert float(rows["DEMO001"]["total_agatston"]) > 0  # DEMO001 has calcium in all three arteries
    for r in rows.values():
        total = sum(float(r[f"{a}_agatston"]) for a in ARTERIES)
        assert float(r["total_agatston"]) == pytest.approx(total, abs=1e-3)


def test_contrast_scan_is_flagged_and_agatston_marked_invalid(tmp_path):
    ph = generate(PhantomConfig.preset("small", contrast=True, seed=4))
    series = LoadedSeries(ph.ct, StudyIdentity(patient_id="C1", study_uid="1.2.3"))
    result = analyse_series(series, tmp_path, Settings().merged({"review": {"enabled": False},
                                                                 "segment": {"allow_demo_model": True}}))
    codes = {f.code for f in result.flags}
    assert F.CONTRAST_SUSPECTED in codes
    assert result.total.agatston_valid is False and result.total.category is None
    assert (tmp_path / "labels.nii.gz").exists() and (tmp_path / "crop.json").exists()


def test_no_model_and_no_demo_fallback_is_a_clear_error(tmp_path, small_phantom_dir):
    # No model installed and no --allow-demo-model: the scan stops at start (exit 2), nothing runs.
    res = CliRunner().invoke(cli, ["scan", str(small_phantom_dir / "dicom"), "--out", str(tmp_path / "r"),
                                   "--no-progress"])
    assert res.exit_code == 2
    assert "cacpipe models install" in res.output and "--allow-demo-model" in res.output
    assert not (tmp_path / "r" / "manifest.json").exists()


def _plaques(items):
    from cacpipe.phantom import Plaque

    return [Plaque(**p) for p in items]

