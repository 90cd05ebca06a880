"""Links to folders in an export are not followed (they can form loops) but counted and named: in the
scan's summary line, in manifest.json and in cacpipe.log, and in the dry run (issue 27, item 9:
they were skipped without a word)."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner
from export_faults import MIN_SLICES, tiny_config

from cacpipe.cli import cli
from cacpipe.phantom import PatientInfo, generate, write_study


def test_folder_links_counted_and_named(tmp_path):
    export, elsewhere, out = tmp_path / "export", tmp_path / "elsewhere", tmp_path / "out"
    for root, pid, seed in ((export, "INSIDE", 61), (elsewhere, "LINKED", 62)):
        cfg = tiny_config(seed=seed)
        write_study(cfg, root, PatientInfo(patient_id=pid), phantom=generate(cfg))
    os.symlink(elsewhere / "LINKED", export / "linked_study")  # a study kept elsewhere
    os.symlink(export, export / "INSIDE" / "loop")  # a loop back to the export's top
    r = CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                 "--analyse", "export_faults:threshold_analyse", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "1 study: 1 done now" in r.output and "2 folder links not followed" in r.output, r.output
    assert f"LINK NOT FOLLOWED {export / 'linked_study'} -> {elsewhere / 'LINKED'}" in r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["folder_links"]) == sorted([f"{export / 'INSIDE' / 'loop'} -> {export}",
                                                       f"{export / 'linked_study'} -> {elsewhere / 'LINKED'}"])
    log = (out / "cacpipe.log").read_text()
    assert log.count("folder link not followed") == 2 and "2 folder links not followed" in log

    r = CliRunner().invoke(cli, ["scan", str(export), "--dry-run", "--min-slices", str(MIN_SLICES)])
    assert r.exit_code == 0, r.output
    assert "2 folder links not followed" in r.output and f"link not followed: {export / 'linked_study'}" in r.output


def test_no_links_no_words(tmp_path):
    cfg = tiny_config(seed=63)
    write_study(cfg, tmp_path / "export", PatientInfo(patient_id="PLAIN"), phantom=generate(cfg))
    r = CliRunner().invoke(cli, ["scan", str(tmp_path / "export"), "--out", str(tmp_path / "out"), "--min-slices",
                                 str(MIN_SLICES), "--analyse", "export_faults:threshold_analyse", "--no-progress"])
    assert r.exit_code == 0 and "folder link" not in r.output and "LINK" not in r.output, r.output
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["folder_links"] == []
