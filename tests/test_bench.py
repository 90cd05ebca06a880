"""`make bench` keeps working: its runner, per-stage processes and report (no timing asserted)."""

import json

from devtools.bench.runner import main


def test_bench_runs_stages_in_processes_and_writes_the_report(tmp_path, capsys):
    main(["--quick", "--out", str(tmp_path), "--only", "quantify", "agatston_reference"])
    rep = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["stage"]: r for r in rep["stages"]}
    assert set(rows) == {"quantify", "agatston_reference"}
    for r in rows.values():
        assert "error" not in r, r
        assert r["seconds"] > 0 and r["peak_rss_mb"] > 0
    # the vectorised and the per-slice reference agree on the same 400-slice scan
    assert rows["quantify"]["details"]["total_agatston"] == rows["agatston_reference"]["details"]["total_agatston"] > 0
    assert "Agatston: per-slice loop / vectorised (speed-up)" in rep["ratios"]
    assert "| quantify |" in (tmp_path / "bench.md").read_text()
