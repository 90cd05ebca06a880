"""Strict reading of the evaluation inputs: every malformed case gets a named, one-line error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cacpipe.cli import cli

HEADER = ["patient_id", "study_uid", "RCA_calcium_volume_mm3", "LAD_calcium_volume_mm3", "LCX_calcium_volume_mm3",
          "total_agatston"]
REF_HEADER = ["patient_id", "study_uid", "RCA_present", "LAD_present", "LCX_present", "total_agatston"]
PRED_ROWS = [["P1", "1.1", "12.5", "0", "3", "20.5"], ["P2", "1.2", "0", "0", "0", "0"],
             ["P3", "1.3", "40", "8", "", "60"], ["P4", "1.4", "0", "5", "0", "7"]]
REF_ROWS = [["P1", "1.1", "1", "0", "1", "25"], ["P2", "1.2", "0", "0", "0", "0"],
            ["P3", "1.3", "1", "1", "0", "55"], ["P4", "1.4", "0", "1", "0", "9"]]


def _write(path, header, rows, sep=","):
    path.write_text("\n".join(sep.join(r) for r in [header, *rows]) + "\n")
    return path


def _run(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


@pytest.fixture
def ref(tmp_path):
    return _write(tmp_path / "ref.csv", REF_HEADER, REF_ROWS)


def _json(tmp_path, *args):
    r = _run(*args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_unmatched_studies_are_listed_and_fail_unless_allowed(tmp_path, ref):
    pred = _write(tmp_path / "pred.csv", HEADER, [*PRED_ROWS[:3], ["P9", "1.9", "0", "0", "0", "0"]])
    r = _run(pred, ref)
    assert r.exit_code != 0
    assert "1.9" in r.output and "1.4" in r.output and "--allow-partial" in r.output
    assert "Traceback" not in r.output
    ok = _run(pred, ref, "--allow-partial")
    assert ok.exit_code == 0, ok.output
    assert "NOT evaluated, only in PRED (1): 1.9" in ok.output and "only in REF (1): 1.4" in ok.output
    res = _json(tmp_path, pred, ref, "--allow-partial")
    assert res["matching"]["matched"] == 3
    assert res["matching"]["unmatched_pred"] == ["1.9"] and res["matching"]["unmatched_ref"] == ["1.4"]


def test_patient_id_must_agree_when_joined_on_study_uid(tmp_path, ref):
    rows = [list(r) for r in PRED_ROWS]
    rows[1][0] = "SOMEONE_ELSE"
    r = _run(_write(tmp_path / "pred.csv", HEADER, rows), ref)
    assert r.exit_code != 0 and "patient_id disagrees" in r.output and "SOMEONE_ELSE" in r.output


@pytest.mark.parametrize("value, why", [("abc", "not a number"), ("-50", "negative"), ("inf", "not a finite number"),
                                        ("nan", "not a finite number")])
def test_bad_numbers_are_named_by_file_row_and_column(tmp_path, ref, value, why):
    rows = [list(r) for r in PRED_ROWS]
    rows[2][3] = value  # P3's LAD volume, row 4 of the file
    pred = _write(tmp_path / "pred.csv", HEADER, rows)
    r = _run(pred, ref)
    assert r.exit_code != 0
    assert f"{pred} column LAD_calcium_volume_mm3: row 4: '{value}' ({why})" in r.output
    assert "Traceback" not in r.output


def test_na_and_empty_cells_mean_not_assessed(tmp_path, ref):
    rows = [list(r) for r in PRED_ROWS]
    rows[0][4] = "NA"
    res = _json(tmp_path, _write(tmp_path / "pred.csv", HEADER, rows), ref)
    lcx = next(x for x in res["presence"] if x["subgroup"] == "all" and x["artery"] == "LCX")
    assert lcx["n"] == 2 and lcx["not_assessed"] == 2  # P1 (NA) and P3 (empty)


def test_semicolon_file_is_detected_and_gives_the_same_answer(tmp_path, ref):
    comma = _json(tmp_path, _write(tmp_path / "pred.csv", HEADER, PRED_ROWS), ref)
    semi = _run(_write(tmp_path / "pred_semi.csv", HEADER, PRED_ROWS, sep=";"), ref)
    assert semi.exit_code == 0, semi.output
    assert "pred_semi.csv: read as semicolon-separated" in semi.output
    semi_json = _json(tmp_path, tmp_path / "pred_semi.csv", ref)
    assert semi_json["presence"] == comma["presence"]


def test_decimal_commas_are_refused_with_a_hint_or_read_when_asked(tmp_path, ref):
    rows = [[*r[:2], *(c.replace(".", ",") for c in r[2:])] for r in PRED_ROWS]  # IDs keep their dots
    assert rows[0][2] == "12,5"
    pred = _write(tmp_path / "pred_eu.csv", HEADER, rows, sep=";")
    r = _run(pred, ref)
    assert r.exit_code != 0
    assert "row 2: '12,5' (not a number)" in r.output and "decimal commas? pass --decimal ','" in r.output
    ok = _json(tmp_path, pred, ref, "--decimal", ",")
    rca = next(x for x in ok["presence"] if x["subgroup"] == "all" and x["artery"] == "RCA")
    assert rca["tp"] == 2  # 12,5 read as 12.5: P1 positive, as in the reference
    # The same numbers unquoted in a comma-separated file split cells: named, with the likely cause.
    bad = _write(tmp_path / "pred_split.csv", HEADER, rows, sep=",")
    r2 = _run(bad, ref)
    assert r2.exit_code != 0 and "row 2: 8 cells but the header has 6" in r2.output and "decimal commas" in r2.output


def test_bad_presence_and_category_cells_are_named(tmp_path):
    pred = _write(tmp_path / "pred.csv", HEADER, PRED_ROWS)
    rows = [list(r) for r in REF_ROWS]
    rows[3][3] = "maybe"
    r = _run(pred, _write(tmp_path / "ref.csv", REF_HEADER, rows))
    assert r.exit_code != 0 and "column LAD_present" in r.output and "row 5: 'maybe'" in r.output
    ref = _write(tmp_path / "ref2.csv", [*REF_HEADER, "category"], [[*x, c] for x, c in
                                                                   zip(REF_ROWS, ["11-100", "0", "11-100", "high"],
                                                                       strict=True)])
    r2 = _run(pred, ref)
    assert r2.exit_code != 0 and "column category" in r2.output and "row 5: 'high'" in r2.output


def test_blank_rater_cell_is_an_error_not_a_traceback(tmp_path):
    lines = ["rater,patient_id,study_uid,artery,rating,comment,timestamp",
             "A,P1,1.1,RCA,excellent,,2026-01-01", "B,P1,1.1,RCA,excellent,,2026-01-01",
             ",P1,1.1,LAD,minor error,,2026-01-01", "B,P1,1.1,LAD,major_error,,2026-01-01"]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    r = _run("--ratings", tmp_path / "r.csv")
    assert r.exit_code != 0 and "row 4 column rater" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_reference_problems(tmp_path):
    pred = _write(tmp_path / "pred.csv", HEADER, PRED_ROWS)
    r = _run(pred, tmp_path / "missing.csv")
    assert r.exit_code != 0 and "reference not found" in r.output
    (tmp_path / "empty").mkdir()
    r2 = _run(pred, tmp_path / "empty")
    assert r2.exit_code != 0 and "neither truth.csv nor phantom truth files" in r2.output
    dup = tmp_path / "dup.csv"
    dup.write_text("patient_id,study_uid,RCA_present,RCA_present\nP1,1.1,1,1\n")
    r3 = _run(pred, dup)
    assert r3.exit_code != 0 and "column names occur more than once: ['RCA_present']" in r3.output
