"""`make bench` keeps working: its runner, per-stage processes and report (no timing asserted)."""

import json

import pytest

from devtools.bench.runner import main


@pytest.mark.slow
def test_bench_runs_stages_in_processes_and_writes_the_report(tmp_path, capsys):
    main(["--quick", "--out", str(tmp_path), "--only", "quantify", "agatston_reference"])
    rep = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["stage"]: r for r in rep["stages"]}
    assert set(rows) == {"quantify", "agatston_reference"}
    for r in rows.values():
        assert "error" not in r, r
        assert r["seconds"] > 0 and r["peak_rss_mb"] > 0
    # the vectorised and the per-slice reference agree on the same scan (120 slices with --quick)
    assert rows["quantify"]["details"]["total_agatston"] == rows["agatston_reference"]["details"]["total_agatston"] > 0
    assert "Agatston: per-slice loop / vectorised (speed-up)" in rep["ratios"]
    assert "| quantify |" in (tmp_path / "bench.md").read_text()


def test_e2e_summary_splits_cold_and_warm_and_compares_with_the_previous_run(tmp_path):
    """The end-to-end mode's bookkeeping on a scan's own records: the first study is the cold
    start, the rest give the median, the stages come from the manifest and result.json."""
    from devtools.bench.e2e import ratios_to, study_records, summarise

    out = tmp_path / "scan"
    studies = {}
    for i, (load, seg, total) in enumerate([(2.0, 30.0, 40.0), (0.5, 10.0, 12.0), (0.7, 12.0, 14.0), (0.6, 11.0, 30.0)]):
        rel = f"P{i}/result.json"
        (out / f"P{i}").mkdir(parents=True)
        (out / rel).write_text(json.dumps({"pipeline": {"seconds": {"segmentation": seg, "review": 1.0}}}))
        studies[f"P{i}/1.2.{i}"] = {"status": "done", "started": f"2026-01-01T00:00:0{i}", "result": rel,
                                    "seconds": {"load": load, "analyse": total - load, "total": total}}
    studies["P9/1.2.9"] = {"status": "skipped", "reason": "no CT series"}
    (out / "manifest.json").write_text(json.dumps({"studies": studies}))
    raw = {"wall_s": 100.0, "peak_rss_mb": 900.0, "peak_gpu_mb": None, "studies": study_records(out)}
    s = summarise(raw)
    assert s["done"] == 4 and s["warm_n"] == 3
    assert s["cold"]["segmentation"] == 30.0 and s["cold"]["load"] == 2.0
    assert s["cold"]["other"] == 40.0 - 2.0 - 30.0 - 1.0
    assert s["warm_median"]["segmentation"] == 11.0 and s["warm_median"]["total"] == 14.0
    assert s["studies_per_min"] == 60.0 * 4 / 100.0
    assert s["planning_s"] == 100.0 - (40 + 12 + 14 + 30)
    assert summarise({**raw, "pipelined": True})["planning_s"] is None  # overlapping studies: no planning split
    before = {**s, "warm_median": {**s["warm_median"], "total": 28.0}, "studies_per_min": 1.2}
    r = ratios_to(before, s)
    assert r["warm total"] == 0.5 and r["studies per minute"] == 2.0 and r["peak RSS"] == 1.0
    assert ratios_to(None, s) == {}
