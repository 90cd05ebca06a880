"""The command line as a user meets it: -i/-o, start checks, exit codes, dry run, per-study lines,
the log file, verbosity, --version, devices. Runner tests use the test analysis (export_faults);
one test runs the real pipeline on a NIfTI CT and its DICOM twin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from export_faults import MIN_SLICES, threshold_analyse

from cacpipe.cli import cli
from cacpipe.config import Settings
from cacpipe.errors import EXIT_CODES, ConfigError
from cacpipe.scan import run_scan
from cacpipe.scan.checks import worker_devices
from cacpipe.volume import Volume

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--min-slices", str(MIN_SLICES), "--analyse", "export_faults:threshold_analyse", "--no-progress"]


@pytest.fixture(scope="module")
def demo_export(tiny_demo_export):
    return tiny_demo_export  # conftest.py: written once per test process


def invoke(*args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# --- 1. one CT: NIfTI, a series folder, a zip, a DICOMDIR ----------------------------------------

@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """A small phantom written as NIfTI (ct.nii.gz) and as a DICOM study (axial + localizer)."""
    from cacpipe.phantom import PhantomConfig
    from cacpipe.phantom.writer import write_phantom

    root = tmp_path_factory.mktemp("twin")
    cfg = PhantomConfig.preset("small", shape_yx=(128, 128), pixel_mm=400.0 / 128, n_slices=40, slice_mm=2.5)
    write_phantom(cfg, root)
    return root


@pytest.mark.slow
def test_nifti_ct_scores_like_its_dicom_twin_end_to_end(twin, tmp_path):
    out = tmp_path / "out"
    real = ["--allow-demo-model", "--folds", "0", "--min-slices", "20", "--no-review", "--no-progress"]
    r1 = invoke("scan", "-i", twin / "ct.nii.gz", "-o", out, "--id", "TWIN", *real)
    assert r1.exit_code == 0, r1.output
    r2 = invoke("scan", twin / "dicom", "--out", out, *real)  # the old spelling still works
    assert r2.exit_code == 0, r2.output
    for r in (r1, r2):  # nnU-Net's CPU notice and other library prints stay out of the console
        assert "perform_everything_on_device" not in r.output
        assert "DEMO MODEL (not for clinical use)" in r.stdout and "Agatston" in r.stdout
    m = _manifest(out)
    nifti = m["studies"]["TWIN/file-TWIN"]
    (dicom,) = [e for k, e in m["studies"].items() if k.startswith("PHANTOM0001/")]
    a = json.loads((out / nifti["result"]).read_text())
    b = json.loads((out / dicom["result"]).read_text())
    assert a["study"]["input_kind"] == "image" and a["study"]["patient_id"] == "TWIN"
    assert b["study"]["input_kind"] == "dicom"
    assert a["ct"]["shape_zyx"] == b["ct"]["shape_zyx"]
    assert np.allclose(a["ct"]["spacing_zyx"], b["ct"]["spacing_zyx"])
    assert a["total"]["agatston"] == pytest.approx(b["total"]["agatston"], abs=1e-6)
    for art in ("RCA", "LAD", "LCX"):
        assert a["arteries"][art]["calcium_volume_mm3"] == pytest.approx(b["arteries"][art]["calcium_volume_mm3"])
    assert a["total"]["agatston"] > 0  # the phantom has calcium; the comparison is not 0 == 0
    # ct.nii.gz next to labels.nii.gz: the scored CT as read, on the labels' grid, with legends
    for res, entry in ((a, nifti), (b, dicom)):
        folder = out / Path(entry["result"]).parent
        ct, labels = Volume.read(folder / "ct.nii.gz"), Volume.read(folder / "labels.nii.gz")
        assert ct.same_grid(labels) and np.array_equal(ct.array, Volume.read(twin / "ct.nii.gz").array)
        assert {"ct", "legend_itksnap", "legend_slicer"} <= set(res["outputs"])
        assert "LAD_calcium" in (folder / "labels.ctbl").read_text()
    # the NIfTI input resumes like any study
    r3 = invoke("scan", "-i", twin / "ct.nii.gz", "-o", out, "--id", "TWIN", *real)
    assert r3.exit_code == 0 and "1 study: 0 done now, 1 already done" in r3.output


def test_series_folder_zip_and_dicomdir_inputs(demo_export, tmp_path):
    from pydicom.fileset import FileSet

    (axial,) = demo_export.glob("DEMO001/*/002_axial")
    fs = FileSet()
    for f in sorted(axial.iterdir()):
        fs.add(f)
    fs.write(tmp_path / "media")
    for i, src in enumerate((axial, demo_export / "DEMO003.zip", tmp_path / "media" / "DICOMDIR")):
        out = tmp_path / f"out{i}"
        r = invoke("scan", "-i", src, "-o", out, *FAST)
        assert r.exit_code == 0, r.output
        assert "1 study: 1 done now" in r.output
        (entry,) = _manifest(out)["studies"].values()
        assert entry["status"] == "done" and (out / entry["result"]).exists()


def test_id_only_for_image_files_and_input_given_once(demo_export, tmp_path):
    r = invoke("scan", "-i", demo_export, "-o", tmp_path / "o", "--id", "X", *FAST)
    assert r.exit_code == 2 and "--id names the patient of a CT image file" in r.output
    other = tmp_path / "other"
    other.mkdir()
    r = invoke("scan", demo_export, "-i", other, "-o", tmp_path / "o", *FAST)
    assert r.exit_code == 2 and "given twice" in r.output
    r = invoke("scan", "-o", tmp_path / "o", *FAST)
    assert r.exit_code == 2 and "-i INPUT" in r.output


# --- 4. start checks: one line, exit 2, nothing run ------------------------------------------------

def test_no_model_stops_at_start_unless_demo_allowed(demo_export, tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_MODEL_DIR", str(tmp_path / "no-models"))
    r = invoke("scan", "-i", demo_export, "-o", tmp_path / "out", "--min-slices", MIN_SLICES, "--no-progress")
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert "no segmentation model installed" in line and "cacpipe models install" in line
    assert "--allow-demo-model" in line
    assert not (tmp_path / "out").exists()  # stopped before the first study; no empty OUT left behind
    kept = tmp_path / "kept"
    kept.mkdir()
    r = invoke("scan", "-i", demo_export, "-o", kept, "--min-slices", MIN_SLICES, "--no-progress")
    assert r.exit_code == 2 and kept.is_dir()  # a folder the user made stays


def test_device_start_checks(demo_export, tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for dev in ("cuda", "cuda:0", "cuda:0,1"):
        r = invoke("scan", "-i", demo_export, "-o", tmp_path / "out", "--device", dev, *FAST)
        assert r.exit_code == 2, r.output
        assert "torch sees no CUDA GPU" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "manifest.json").exists()
    r = invoke("scan", "-i", demo_export, "-o", tmp_path / "out", "--device", "gpu1", *FAST)
    assert r.exit_code == 2 and "is not one of auto, cpu, cuda" in r.output


def test_worker_devices_spread_over_gpus():
    assert worker_devices("cuda:0,1", 1, gpus=2) == ["cuda:0", "cuda:1"]
    assert worker_devices("cuda:1,0", 4, gpus=2) == ["cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("cuda:1", 2, gpus=2) == ["cuda:1", "cuda:1"]
    assert worker_devices("auto", 3, gpus=0) == ["auto"] * 3
    assert worker_devices("cpu", 1, gpus=4) == ["cpu"]
    for dev, gpus, msg in (("cuda:2", 2, "no GPU 2"), ("cuda", 0, "no CUDA GPU"), ("cuda:0,0", 2, "twice")):
        with pytest.raises(ConfigError, match=msg):
            worker_devices(dev, 1, gpus)


def test_each_worker_process_keeps_its_device(demo_export, tmp_path):
    # Two workers with different devices (cpu and auto: both run here); each study runs on the device
    # of the worker that took it, and every worker keeps one device.
    settings = Settings().merged({"selection": {"min_slices": MIN_SLICES}, "device": "cpu"})
    s = run_scan(demo_export, tmp_path / "out", analyse=threshold_analyse, settings=settings, progress=False,
                 devices=["cpu", "auto"])
    assert (s.done, s.failed) == (3, 0)
    per_worker: dict[str, set] = {}
    for e in _manifest(tmp_path / "out")["studies"].values():
        res = json.loads((tmp_path / "out" / e["result"]).read_text())
        assert res["pipeline"]["settings"]["device"] == e["device"]
        per_worker.setdefault(e["worker"], set()).add(e["device"])
    assert str(os.getpid()) not in {w.split(":")[-1] for w in per_worker}
    assert all(len(d) == 1 for d in per_worker.values())
    assert set().union(*per_worker.values()) == {"cpu", "auto"}


def test_unknown_settings_key_and_unwritable_output(demo_export, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"segment": {"foldz": [0]}}))
    r = invoke("scan", "-i", demo_export, "-o", tmp_path / "out", "--settings", bad, *FAST)
    assert r.exit_code == 2
    assert "unknown setting(s) ['foldz']" in r.output and "valid keys" in r.output and "'folds'" in r.output
    afile = tmp_path / "a_file"
    afile.write_text("x")
    r = invoke("scan", "-i", demo_export, "-o", afile, *FAST)
    assert r.exit_code == 2 and "is a file" in r.output
    r = invoke("scan", "-i", demo_export, "-o", demo_export / "results", *FAST)
    assert r.exit_code == 2 and "inside the export" in r.output and not (demo_export / "results").exists()


def test_nothing_to_score_has_its_own_exit_code(demo_export, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a CT")
    r = invoke("scan", "-i", empty, "-o", tmp_path / "o1", *FAST)
    assert r.exit_code == 3 and "nothing to score: no DICOM CT study found" in r.stderr
    # a study whose every series is skipped (too few slices for the rules)
    r = invoke("scan", "-i", demo_export, "-o", tmp_path / "o2", "--min-slices", "500",
               "--analyse", "export_faults:threshold_analyse", "--no-progress")
    assert r.exit_code == 3 and "none of the 3 studies" in r.stderr
    assert {e["status"] for e in _manifest(tmp_path / "o2")["studies"].values()} == {"skipped"}


# --- 5. dry run --------------------------------------------------------------------------------------

def test_dry_run_lists_chosen_and_skipped_series_without_analysing(demo_export, tmp_path):
    out = tmp_path / "out"
    r = invoke("scan", "-i", demo_export, "-o", out, "--dry-run", *FAST)
    assert r.exit_code == 0, r.output
    assert r.stdout.count("  SCORE  ") == 3
    assert "localizer" in r.stdout and "contrast agent" in r.stdout and "another series preferred" in r.stdout
    assert "nothing was analysed" in r.stdout
    plan = json.loads((out / "dry_run.json").read_text())
    assert plan["schema"] == "cacpipe.preview/1" and plan["counts"]["scorable"] == 3
    demo1 = next(s for s in plan["studies"] if s["patient_id"] == "DEMO001")
    assert any(k["reason"].startswith("localizer") for k in demo1["skipped"])
    assert not (out / "manifest.json").exists()
    # `cacpipe list` is the same listing; --json prints it
    r2 = invoke("list", demo_export, "--min-slices", MIN_SLICES, "--json", "--no-progress")
    assert r2.exit_code == 0
    listed = json.loads(r2.stdout)
    assert [s["key"] for s in listed["studies"]] == [s["key"] for s in plan["studies"]]
    r3 = invoke("list", demo_export, "--no-progress")  # default rules: 24-slice series are too short
    assert r3.exit_code == 3 and "too few slices" in r3.stdout


# --- 6. per-study lines, log file, verbosity ----------------------------------------------------------

def test_per_study_lines_log_file_and_quiet(demo_export, tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_TEST_FAIL", "DEMO002")
    out = tmp_path / "out"
    r = invoke("scan", "-i", demo_export, "-o", out, *FAST)
    assert r.exit_code == 1
    done = [ln for ln in r.stdout.splitlines() if ln.startswith("done ")]
    assert len(done) == 2 and all("Agatston" in ln for ln in done)
    assert any(ln.startswith("done    DEMO001 ") and "DEMO MODEL" in ln for ln in done)
    assert "FAILED  DEMO002/" in r.stderr and "synthetic analysis failure" in r.stderr
    log = (out / "cacpipe.log").read_text()
    for ln in done:
        assert ln in log
    assert "FAILED  DEMO002/" in log and "1 failed" in log
    # -q after the sub-command: no per-study lines, the summary stays
    monkeypatch.delenv("CACPIPE_TEST_FAIL")
    r = invoke("scan", "-i", demo_export, "-o", out, "-q", *FAST)
    assert r.exit_code == 0 and "1 done now, 2 already done" in r.stdout
    assert not [ln for ln in r.stdout.splitlines() if ln.startswith("done ")]
    assert log in (out / "cacpipe.log").read_text()  # appended, run after run
    r = invoke("scan", "-i", demo_export, "-o", out, *FAST, "-vv")
    assert r.exit_code == 0


# --- 7. versions, python -m, help ---------------------------------------------------------------------

def test_version_on_every_entry_point():
    from cacpipe import __version__

    bindir = Path(sys.executable).parent
    for cmd in ([sys.executable, "-m", "cacpipe", "--version"], [str(bindir / "cacpipe"), "--version"],
                [str(bindir / "cacpipe-labels"), "--version"]):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0 and __version__ in p.stdout, (cmd, p.stdout, p.stderr)
    a = subprocess.run([sys.executable, "-m", "cacpipe", "--help"], capture_output=True, text=True, timeout=120)
    b = subprocess.run([str(bindir / "cacpipe"), "--help"], capture_output=True, text=True, timeout=120)
    assert a.stdout == b.stdout and "Usage: cacpipe " in a.stdout


def test_scan_help_is_grouped_and_io_convention_everywhere(tmp_path):
    text = invoke("scan", "--help").output
    titles = ["Input and output:", "Input selection:", "Model and heart locator:", "Outputs:", "PACS:",
              "Performance:", "Settings:"]
    assert [text.index(t) for t in titles] == sorted(text.index(t) for t in titles)
    assert "--no-demo-model" not in text and "-i, --input" in text and "-o, --out" in text
    for cmd in (["demo"], ["heart"], ["phantom", "write"], ["phantom", "cohort"], ["list"], ["evaluate"]):
        assert "-o, --out" in invoke(*cmd, "--help").output, cmd
    r = invoke("phantom", "-o", tmp_path / "p", "--preset", "small", "--no-dicom")
    assert r.exit_code == 0 and (tmp_path / "p" / "ct.nii.gz").exists()
    r = invoke("heart", "-i", tmp_path / "p" / "ct.nii.gz", "-o", tmp_path / "h", "--method", "fallback")
    assert r.exit_code == 0 and (tmp_path / "h" / "crop.json").exists()


# --- 8. documentation generated from the code ---------------------------------------------------------

def test_exit_codes_documented():
    # (docs/settings.md, the --settings reference, is checked by test_config.py)
    cli_doc = (ROOT / "docs" / "cli.md").read_text()
    for code, text in EXIT_CODES.items():
        assert f"| {code} | {text} |" in cli_doc
