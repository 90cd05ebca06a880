"""Every name cacpipe writes or reads at OUT's root is reserved: a PatientID ``cacpipe.log`` or
``dry_run.json`` no longer breaks a run (issue 27, item 9)."""

from __future__ import annotations

import json
import stat

import pydicom
from click.testing import CliRunner
from export_faults import MIN_SLICES

from cacpipe.cli import cli
from cacpipe.phantom.demo_export import write_demo_export


def test_patient_ids_named_like_run_files(tmp_path):
    export = tmp_path / "export"
    write_demo_export(export, shape_yx=(64, 64), pixel_mm=400.0 / 64, n_slices=24)
    renamed = {"DEMO002": "cacpipe.log", "DEMO001": "dry_run.json"}  # (DEMO003 sits in a zip)
    for p in export.rglob("*"):
        if p.is_file() and p.suffix.lower() != ".txt":
            try:
                ds = pydicom.dcmread(p)
            except Exception:  # noqa: BLE001 - DICOMDIR or README
                continue
            if str(ds.get("PatientID", "")) in renamed:
                ds.PatientID = renamed[str(ds.PatientID)]
                ds.save_as(p)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["list", str(export), "-o", str(out), "--min-slices", str(MIN_SLICES), "--no-progress"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["scan", str(export), "-o", str(out), "--min-slices", str(MIN_SLICES),
                                 "--analyse", "export_faults:threshold_analyse", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "3 done now" in r.output
    assert (out / "cacpipe.log").is_file() and (out / "dry_run.json").is_file()
    entries = {e["patient_id"]: e for e in json.loads((out / "manifest.json").read_text())["studies"].values()}
    for pid in renamed.values():
        folder = entries[pid]["result"].split("/")[0]
        assert folder != pid and folder.startswith(f"_{pid}-")
    r = CliRunner().invoke(cli, ["list", str(export), "-o", str(out), "--min-slices", str(MIN_SLICES), "--no-progress"])
    assert r.exit_code == 0 and (out / "dry_run.json").is_file()
    assert stat.S_IMODE((out / "cacpipe.log").stat().st_mode) == 0o600


def test_a_full_disk_is_one_line(tmp_path):
    """Writing past a file-size limit (what a full disk or quota looks like to the writer): one line,
    exit 4, no traceback."""
    import subprocess
    import sys

    script = ("import resource, signal, sys\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))\n"
              "from cacpipe.cli import main\n"
              "main(['phantom', 'write', sys.argv[1], '--preset', 'small'])\n")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "p")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 4, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "run the same command again" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
