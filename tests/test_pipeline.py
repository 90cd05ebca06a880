"""End to end: a phantom PACS export through the real pipeline (stage 1 fallback locator,
the shipped phantom demo nnU-Net model, quantification, review outputs) via the real commands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from PIL import Image

from cacpipe import flags as F
from cacpipe.cli import cli
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from cacpipe.phantom import PhantomConfig, generate
from cacpipe.quant.quantify import quantify
from cacpipe.volume import Volume

pytestmark = [pytest.mark.xdist_group("pipeline"), pytest.mark.slow]  # the demo model on the demo export


ALLOW_DEMO = {"segment": {"allow_demo_model": True}}  # what `cacpipe demo` / `--allow-demo-model` set


def _scan(export, out, *extra):
    """`cacpipe scan` with the demo model allowed explicitly (no model is installed in the tests)."""
    settings = out.parent / f"{out.name}_settings.json"
    settings.write_text(json.dumps(ALLOW_DEMO))
    return CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--settings", str(settings),
                                    "--no-progress", *extra])


@pytest.fixture(scope="session")  # once: `make test` (--dist loadscope) runs this module on one worker
def demo_run(tmp_path_factory):
    """The demo export (what `cacpipe demo` writes) scanned with the demo model allowed."""
    from cacpipe.phantom.demo_export import write_demo_export

    out = tmp_path_factory.mktemp("demo")
    write_demo_export(out / "export", truth_dir=out / "truth")
    return out, _scan(out / "export", out / "results")


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


def test_demo_results_round_trip_through_the_typed_record(demo_run):
    """result.json of the real pipeline -> StudyResult (str enums for status and severity) -> the same JSON."""
    from cacpipe.flags import Severity
    from cacpipe.record import Status, StudyResult

    out, _ = demo_run
    paths = sorted((out / "results").rglob("result.json"))
    assert len(paths) == 3
    severities = set()
    for path in paths:
        d = json.loads(path.read_text())
        res = StudyResult.from_json(d)
        assert isinstance(res.status, Status) and all(isinstance(f.severity, Severity) for f in res.flags)
        assert res.to_json() == d
        severities |= {f.severity for f in res.flags}
    assert Severity.WARNING in severities  # the demo model's flag at least


def test_demo_truth_table_reads_reported_and_true_numbers(demo_run):
    """`cacpipe demo` ends with true vs reported Agatston per patient and artery, and the category."""
    from cacpipe.evaluation.demo import truth_table

    out, _ = demo_run
    text = truth_table(out / "results", out / "truth")
    rows = {r["patient_id"]: r for r in csv.DictReader((out / "results" / "cohort.csv").open())}
    for pid in ("DEMO001", "DEMO002", "DEMO003"):
        truth = json.loads((out / "truth" / f"{pid}.json").read_text())
        line = next(ln for ln in text.splitlines() if ln.startswith(pid))
        for a in ARTERIES:
            assert f"{truth['arteries'][a]['agatston']:.1f} / {float(rows[pid][f'{a}_agatston']):.1f}" in line
        assert line.rstrip().endswith(f"/ {rows[pid]['category']}")


def test_contrast_tagged_series_scored_with_allow_contrast_gets_no_category(tmp_path, small_phantom):
    """A series whose DICOM tags name a contrast agent (the image itself is not enhanced, so only the
    tag can raise the flag), scored on request: flagged, Agatston not valid, no category, everywhere."""
    from cacpipe.phantom import PatientInfo
    from cacpipe.phantom.dicom_study import write_axial_series
    from cacpipe.review.dicom_out import FINDING

    write_axial_series(small_phantom.ct, tmp_path / "export" / "CON1" / "002_contrast", PatientInfo(patient_id="CON1"),
                       "1.2.826.0.1.3680043.10.1437.16", 2, "Thorax C+ 2mm", contrast_agent="IOPAMIDOL 370")
    res = _scan(tmp_path / "export", tmp_path / "out", "--allow-contrast", "--folds", "0")  # one fold: the flag is the point
    assert res.exit_code == 0, res.output
    (study,) = [p.parent for p in (tmp_path / "out").glob("CON1/*/result.json")]
    result = json.loads((study / "result.json").read_text())
    contrast = [f for f in result["flags"] if f["code"] == F.CONTRAST_SUSPECTED]
    assert contrast and "IOPAMIDOL 370" in contrast[0]["message"] and contrast[0]["severity"] == "invalid"
    assert result["total"]["agatston"] > 0  # the numbers stay, as numbers ...
    assert result["total"]["agatston_valid"] is False  # ... but not as a valid score
    assert result["total"]["category"] is None and result["total"]["cac_drs"] is None
    assert not any(result["arteries"][a]["agatston_valid"] for a in ARTERIES)
    (row,) = csv.DictReader((tmp_path / "out" / "cohort.csv").open())
    assert (row["category"], row["cac_drs"], row["agatston_valid"]) == ("", "", "False")
    assert F.CONTRAST_SUSPECTED in row["flags"].split(";")
    review = json.loads((study / "review.json").read_text())
    assert F.CONTRAST_SUSPECTED in {f["code"] for f in review["flags"]} and review["total"]["category"] is None
    sr = pydicom.dcmread(study / result["outputs"]["sr"])
    texts = [str(i.TextValue) for i in _sr_items(sr) if i.ValueType == "TEXT"
             and i.ConceptNameCodeSequence[0].CodeValue == FINDING.value]
    assert any(t.startswith("Agatston category not given: contrast suspected") for t in texts)
    assert any(t.startswith("CAC-DRS not given: contrast suspected") for t in texts)


def _sr_items(ds):
    for it in ds.get("ContentSequence", []):
        yield it
        yield from _sr_items(it)


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



def test_demo_model_results_say_so_in_every_output(demo_run):
    """A run with the demo model allowed: the statement is in the PNG and secondary-capture pixels
    (checked against an independent rendering of the same text), the SEG/SR/SC headers and cohort.csv."""
    from test_outputs_honest import statement_present

    from cacpipe import __version__
    from cacpipe.record import DEMO_MODEL_STATEMENT, FALLBACK_HEART_STATEMENT, RESEARCH_USE, StudyResult

    out, _ = demo_run
    (study,) = [p.parent for p in (out / "results").glob("DEMO001/*/result.json")]
    result = StudyResult.load(study / "result.json")
    prov = result.provenance()
    assert prov.model_is_demo and prov.heart_locator == "fallback" and prov.severity_fitted is False
    assert len(prov.model_id) == 12 and prov.cacpipe_version == __version__
    pngs = [study / p for p in result.outputs["overlays"]]
    scs = [study / p for p in result.outputs["sc"]]
    assert len(pngs) == len(scs) > 1
    for png, sc in zip(pngs, scs, strict=True):
        assert statement_present(np.asarray(Image.open(png).convert("RGB")), result), png
        ds = pydicom.dcmread(sc)
        assert statement_present(ds.pixel_array, result), sc
        assert ds.SeriesDescription.startswith("DEMO NOT CLINICAL CAC SC") and prov.line() in ds.ImageComments
    for key in ("seg", "sr"):
        ds = pydicom.dcmread(study / result.outputs[key], stop_before_pixels=True)
        desc = ds.SeriesDescription
        assert desc.startswith(f"DEMO NOT CLINICAL CAC {key.upper()}") and f"model {prov.model_id[:8]}" in desc
        assert f"cacpipe {__version__}" in desc
    seg = pydicom.dcmread(study / result.outputs["seg"], stop_before_pixels=True)
    assert DEMO_MODEL_STATEMENT in seg.ImageComments and seg.ContentDescription == "DEMO MODEL - NOT FOR CLINICAL USE"
    sr = pydicom.dcmread(study / result.outputs["sr"])
    assert prov.line() in [str(i.TextValue) for i in _sr_items(sr) if i.ValueType == "TEXT"]
    assert not [i for i in _sr_items(sr) if i.ValueType == "CODE" and i.ConceptNameCodeSequence[0].CodeValue
                == "246112005"]  # no severity grade from the unfitted packaged model
    rows = {r["patient_id"]: r for r in csv.DictReader((out / "results" / "cohort.csv").open())}
    r = rows["DEMO001"]
    assert (r["model_is_demo"], r["heart_locator"], r["severity_model_fitted"]) == ("True", "fallback", "False")
    assert (r["model_id"], r["cacpipe_version"]) == (prov.model_id, __version__)
    assert r["model_name"].startswith("Dataset") and RESEARCH_USE in r["statement"]
    assert FALLBACK_HEART_STATEMENT in r["statement"]


def test_lesion_slices_lead_to_the_pacs_image(demo_run):
    """Every lesion is named by the InstanceNumber and table position of the image a PACS shows."""
    out, _ = demo_run
    (study,) = [p.parent for p in (out / "results").glob("DEMO001/*/result.json")]
    result = json.loads((study / "result.json").read_text())
    review = json.loads((study / "review.json").read_text())
    series = next((out / "export" / "DEMO001").glob("*/002_axial"))
    by_instance = {int(ds.InstanceNumber): ds for ds in (pydicom.dcmread(p, stop_before_pixels=True)
                                                         for p in series.glob("*.dcm"))}
    origin_z, dz = result["ct"]["origin_xyz"][2], result["ct"]["spacing_zyx"][0]
    assert review["lesions"]
    for les, entry in zip(result["lesions"], review["lesions"], strict=True):
        ds = by_instance[entry["image"]]
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(origin_z + les["best_slice"] * dz, abs=1e-3)
        assert entry["reference"] == f"image {entry['image']} (z {float(ds.SliceLocation):.1f} mm)"
        assert (study / "overlays" / f"image_{entry['image']:04d}.png").exists()


def test_scan_outputs_with_patient_data_are_owner_only(demo_run):
    import stat

    out, _ = demo_run
    results = out / "results"
    written = [results, *(p for p in results.rglob("*") if not p.name.startswith("."))]  # OUT: created by the scan
    assert any(p.name == "seg.dcm" for p in written) and any(p.suffix == ".png" for p in written)
    for p in written:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p.relative_to(results), oct(mode))


def test_real_seg_and_sr_pass_the_dicom_validator(demo_run):
    from pathlib import Path

    from test_outputs_honest import DCIODVFY, dciodvfy

    if not Path(DCIODVFY).exists():
        pytest.skip("dciodvfy (Debian package dicom3tools; `make test` installs it) is not installed")
    out, _ = demo_run
    for study in sorted(p.parent for p in (out / "results").glob("DEMO00*/*/result.json")):
        for name in ("seg.dcm", "sr.dcm", "sc_000.dcm"):
            errors, _ = dciodvfy(study / "dicom" / name)
            assert errors == [], (study.parent.name, name, errors)


def test_pipelined_scan_gives_the_same_numbers(demo_run, tmp_path):
    """`cacpipe scan --pipeline` (next study's heart crop and previous study's review in threads while
    one is segmented) scores the demo export exactly as the study-after-study scan."""
    import shutil

    base, r = demo_run
    # Two of the three studies (a calcified one and the CAC = 0 one) are enough to overlap the steps.
    export = tmp_path / "export"
    for patient in ("DEMO001", "DEMO002"):
        shutil.copytree(base / "export" / patient, export / patient)
    piped = tmp_path / "piped"
    rp = _scan(export, piped, "--pipeline")
    assert rp.exit_code == r.exit_code == 0, rp.output

    def cohort(out):
        with open(out / "cohort.csv", newline="") as f:
            return {row["patient_id"]: row for row in csv.DictReader(f)}

    a, b = cohort(base / "results"), cohort(piped)
    assert len(b) == 2 and b == {p: a[p] for p in b}
    manifest = json.loads((piped / "manifest.json").read_text())
    for e in manifest["studies"].values():
        if e["status"] != "done":
            continue
        ra = json.loads((base / "results" / e["result"]).read_text())
        rb = json.loads((piped / e["result"]).read_text())
        for key in ("arteries", "total", "lesions", "flags", "status"):
            assert ra[key] == rb[key], (e["patient_id"], key)
        assert set(rb["pipeline"]["seconds"]) >= {"heart_crop", "segmentation", "quantification", "review"}
        assert set(ra["outputs"]) == set(rb["outputs"])
