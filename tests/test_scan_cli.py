"""The ``scan`` and ``demo`` commands on the demo export (with the test analysis: the runner is under test)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from export_faults import MIN_SLICES

from cacpipe.cli import cli


@pytest.fixture(scope="module")
def demo_export(tiny_demo_export):
    return tiny_demo_export  # conftest.py: written once per test process


def _scan(export, out, *extra):
    return CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                    "--analyse", "export_faults:threshold_analyse", "--no-progress", *extra])


def test_help():
    for cmd in ("scan", "demo"):
        r = CliRunner().invoke(cli, [cmd, "--help"])
        assert r.exit_code == 0 and "--jobs" in r.output


def test_scan_command_on_demo_export(demo_export, tmp_path):
    r = _scan(demo_export, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "3 studies: 3 done now, 0 already done, 0 failed, 0 skipped" in r.output
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    st = {e["patient_id"]: e for e in m["studies"].values()}
    assert {e["status"] for e in st.values()} == {"done"}
    r1 = {s["series_description"]: s["reason"] for s in st["DEMO001"]["skipped_series"]}
    assert "localizer" in r1["Topogram 0.6 T20f"] and "contrast agent" in r1["Thorax C+ 2mm"]
    r3 = {s["series_description"]: s["reason"] for s in st["DEMO003"]["skipped_series"]}
    assert "another series preferred" in r3["Thorax 1mm LUNG"]
    assert m["ignored_files"] == 1 and m["problems"] == []  # README.txt
    # Second run: nothing to do.
    r = _scan(demo_export, tmp_path / "out")
    assert r.exit_code == 0 and "0 done now, 3 already done" in r.output


def test_scan_command_exit_code_on_failure(demo_export, tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_TEST_FAIL", "DEMO002")
    r = _scan(demo_export, tmp_path / "out")
    assert r.exit_code == 1
    assert "FAILED DEMO002/" in r.output and "synthetic analysis failure" in r.output
    r = _scan(demo_export, tmp_path / "out", "--analyse", "no_such_module:f")
    assert r.exit_code == 2 and "cannot import" in r.output


def test_output_folder_inside_the_export_is_refused(demo_export, tmp_path):
    """Later runs would read their own outputs (the DICOM SEG/SR/SC among them): refused before anything runs."""
    r = _scan(demo_export, demo_export / "results")
    assert r.exit_code == 2 and "inside the export" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (demo_export / "results").exists()
