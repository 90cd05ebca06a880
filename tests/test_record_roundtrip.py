"""result.json survives the typed record unchanged: statuses and severities are ``str`` enums in
memory and the same plain strings on disk (schema cacpipe.result/2)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from export_faults import MIN_SLICES

from cacpipe import flags as F
from cacpipe.cli import cli
from cacpipe.flags import Flag, Severity
from cacpipe.record import RESULT_SCHEMA, STATUSES, Status, StudyResult, cohort_row


def test_every_flag_code_is_defined_once_in_flags():
    codes = {k: v for k, v in vars(F).items() if k.isupper() and isinstance(v, str)}
    assert len(set(codes.values())) == len(codes)  # no two names for one code
    assert {"duplicate_slices", "series_fallback", "gantry_tilt", "duplicate_instances"} <= set(codes.values())


def test_statuses_and_severities_are_str_enums():
    assert STATUSES == ("done", "not_assessable", "failed") and Status.FAILED == "failed"
    assert Flag("x", "m", "invalid").severity is Severity.INVALID
    assert f"{Severity.WARNING}" == "warning" and str(Status.NOT_ASSESSABLE) == "not_assessable"
    assert json.dumps(Flag("x", "m", "info").to_dict()) == '{"code": "x", "message": "m", "severity": "info", "artery": null}'
    assert json.dumps({"status": Status.DONE}) == '{"status": "done"}'


def test_a_scanned_result_round_trips_unchanged(tiny_demo_export, tmp_path):
    export = tiny_demo_export
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                 "--analyse", "export_faults:threshold_analyse", "--no-progress"])
    assert r.exit_code == 0, r.output
    paths = sorted(out.rglob("result.json"))
    assert len(paths) == 3
    for path in paths:
        text = path.read_text()
        d = json.loads(text)
        assert d["schema"] == RESULT_SCHEMA
        res = StudyResult.from_json(d)
        assert isinstance(res.status, Status) and all(isinstance(f.severity, Severity) for f in res.flags)
        assert res.to_json() == d  # the typed record adds, drops and renames nothing
        assert json.dumps(res.to_json(), sort_keys=True) == json.dumps(d, sort_keys=True)
        assert cohort_row(res)["status"] == d["status"] and type(cohort_row(res)["status"]) is str
    # the real pipeline's results (with flags of every severity): tests/test_pipeline.py::
    # test_demo_results_round_trip_through_the_typed_record
