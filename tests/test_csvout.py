"""CSV outputs: spreadsheet formula injection is neutralised (cacpipe.csvout)."""

from __future__ import annotations


def test_csv_cells_cannot_become_formulas(tmp_path):
    import csv

    from cacpipe.csvout import safe_cell, write_csv

    assert safe_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert safe_cell("+1-2") == "'+1-2" and safe_cell("@SUM(A1)") == "'@SUM(A1)" and safe_cell("-x") == "'-x"
    assert safe_cell("-50") == "-50" and safe_cell(-1.5) == "-1.5" and safe_cell(None) == ""
    p = write_csv(tmp_path / "t.csv", [{"a": "=1+1", "b": 3}], ["a", "b"])
    assert list(csv.reader(p.open())) == [["a", "b"], ["'=1+1", "3"]]
