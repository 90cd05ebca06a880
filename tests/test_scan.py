"""The batch runner on a faulty export: reasons, results, manifest, resume, kill, jobs, Dask."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from export_faults import MIN_SLICES, build_faulty_export, threshold_analyse

from cacpipe.config import Settings
from cacpipe.errors import ConfigError
from cacpipe.scan import LOCK, run_scan
from cacpipe.units import CALCIUM_THRESHOLD_HU
from cacpipe.volume import Volume

RULES = Settings().merged({"selection": {"min_slices": MIN_SLICES}})
DONE = {"P01GOOD", "P02ZIP", "P03DIR", "P05DUP", "P09FALL"}
FAILED = {"P04MISS", "P06TRUNC"}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    return build_faulty_export(tmp_path_factory.mktemp("faulty"))


@pytest.fixture(scope="module")
def reference(faulty, tmp_path_factory):
    """One serial scan of the faulty export (shared by the tests below)."""
    out = tmp_path_factory.mktemp("scan_ref") / "out"
    summary = run_scan(faulty.root, out, analyse=threshold_analyse, settings=RULES, progress=False)
    return out, summary


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _by_patient(out: Path) -> dict:
    return {e["patient_id"]: e for e in _manifest(out)["studies"].values()}


def _cohort(out: Path) -> dict:
    with open(out / "cohort.csv", newline="") as f:
        return {r["patient_id"]: r for r in csv.DictReader(f)}


def _results(out: Path) -> dict:
    return {e["patient_id"]: json.loads((out / e["result"]).read_text())
            for e in _manifest(out)["studies"].values() if e["status"] == "done"}


def test_every_fault_reported_and_good_studies_scored(faulty, reference):
    out, summary = reference
    assert summary.exit_code == 1 and summary.failed == 2 and summary.done == 5 and summary.skipped == 2
    entries = _by_patient(out)
    assert set(entries) == set(faulty.expected)
    for pid, (status, part) in faulty.expected.items():
        assert entries[pid]["status"] == status, (pid, entries[pid])
        assert part in entries[pid]["reason"], (pid, entries[pid]["reason"])
        assert "\n" not in entries[pid]["reason"]
    assert {k.split("/")[0] for k, _ in summary.failures} == FAILED
    # File-level faults are in the manifest, with the zip member named.
    problems = _manifest(out)["problems"]
    for source_part, reason_part in faulty.problems:
        assert any(source_part in p["source"] and reason_part in p["reason"] for p in problems), source_part
    assert _manifest(out)["ignored_files"] == 2  # README.txt, THUMBS
    # Skipped series of a scored study carry their reasons.
    reasons = " | ".join(s["reason"] for s in entries["P01GOOD"]["skipped_series"])
    assert "localizer" in reasons and "contrast agent" in reasons and "modality SR" in reasons


def test_scored_volumes_match_ground_truth(faulty, reference):
    out, _ = reference
    results, cohort = _results(out), _cohort(out)
    assert set(results) == DONE
    for pid, res in results.items():
        ct = faulty.phantoms[pid].ct
        expected = float((ct.array >= CALCIUM_THRESHOLD_HU).sum() * ct.voxel_volume_mm3)
        assert res["total"]["calcium_volume_mm3"] == pytest.approx(expected)
        assert float(cohort[pid]["total_calcium_volume_mm3"]) == pytest.approx(expected, rel=1e-6)
        assert res["study"]["study_uid"] == faulty.study_uids[pid] and res["study"]["patient_id"] == pid
        assert res["ingest"]["files"] >= 24 and res["outputs"]["labels"] == "labels.nii.gz"
        labels = Volume.read(out / Path(_by_patient(out)[pid]["result"]).parent / "labels.nii.gz")
        assert labels.same_grid(ct) and int((labels.array > 0).sum()) == int((ct.array >= 130).sum())
    assert "duplicate_slices" in {f["code"] for f in results["P05DUP"]["flags"]}
    assert "duplicate_slices" in cohort["P05DUP"]["flags"]
    fallback = {f["code"]: f["message"] for f in results["P09FALL"]["flags"]}["series_fallback"]
    assert "truncated pixel data" in fallback and "LUNG" in results["P09FALL"]["study"]["series_description"]
    assert _by_patient(out)["P09FALL"]["series_uid"] == results["P09FALL"]["study"]["series_uid"]
    assert cohort["P04MISS"]["status"] == "failed" and cohort["P04MISS"]["total_agatston"] == ""
    assert cohort["P07TINY"]["status"] == "skipped"
    # Nothing temporary left behind; nothing extracted outside the output folder.
    assert not list(out.glob("*/.*")) and not (out / ".tmp").exists() and not (out / LOCK).exists()
    assert not (faulty.root.parent / "evil.dcm").exists() and not (out.parent / "evil.dcm").exists()


def test_rerun_redoes_only_failed_and_changed(faulty, reference, tmp_path, monkeypatch):
    out, _ = reference
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CACPIPE_TEST_CALLS", str(calls))
    s = run_scan(faulty.root, out, analyse=threshold_analyse, settings=RULES, progress=False)
    assert (s.up_to_date, s.processed, s.failed) == (5, 2, 2)
    assert not calls.exists()  # the two failures fail in assembly, before analysis
    # A changed input file is redone, the rest is not.
    f = sorted((faulty.root / "P01GOOD").rglob("002_axial/*.dcm"))[0]
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    s = run_scan(faulty.root, out, analyse=threshold_analyse, settings=RULES, progress=False)
    assert calls.read_text().split() == ["P01GOOD"] and s.up_to_date == 4
    assert _by_patient(out)["P01GOOD"]["status"] == "done"


def test_analysis_exception_is_one_line_and_batch_goes_on(faulty, tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_TEST_FAIL", "P02ZIP")
    s = run_scan(faulty.root, tmp_path / "out", analyse=threshold_analyse, settings=RULES, progress=False)
    e = _by_patient(tmp_path / "out")["P02ZIP"]
    assert e["status"] == "failed" and e["reason"] == "RuntimeError: synthetic analysis failure second line"
    assert "Traceback" in e["detail"] and s.done == 4 and s.failed == 3
    assert not list((tmp_path / "out").glob("P02ZIP/*"))  # no partial folder


def test_concurrent_scan_refused(faulty, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    with pytest.raises(ConfigError, match="another cacpipe scan"):
        run_scan(faulty.root, out, analyse=threshold_analyse, settings=RULES, progress=False)


def test_kill_and_resume(faulty, reference, tmp_path, monkeypatch):
    out, marker = tmp_path / "out", tmp_path / "slow-started"
    tests_dir, repo = Path(__file__).parent, Path(__file__).parents[1]
    script = (f"import sys; sys.path[:0] = [{str(repo)!r}, {str(tests_dir)!r}]\n"
              "from export_faults import threshold_analyse, MIN_SLICES\n"
              "from cacpipe.config import Settings\nfrom cacpipe.scan import run_scan\n"
              f"run_scan({str(faulty.root)!r}, {str(out)!r}, analyse=threshold_analyse, "
              "settings=Settings().merged({'selection': {'min_slices': MIN_SLICES}}), progress=False)\n")
    env = {**os.environ, "CACPIPE_TEST_SLOW": "P03DIR", "CACPIPE_TEST_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.time() + 60
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the slow study never started"
    finally:
        proc.kill()
        proc.wait()
    # Killed while P03DIR was half-written: it does not count as done, its folder is temporary.
    entries = _by_patient(out)
    assert entries["P03DIR"]["status"] == "pending"
    for pid in ("P01GOOD", "P02ZIP"):  # finished: done in the manifest, or (throttled write) a complete result
        assert entries[pid]["status"] == "done" or list((out / pid).glob("*/result.json"))
    half = Path(marker.read_text())
    assert half.name.startswith(".") and (half / "labels.nii.gz").exists() and not (half / "result.json").exists()
    assert not (half.parent / faulty.study_uids["P03DIR"]).exists()

    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CACPIPE_TEST_CALLS", str(calls))
    s = run_scan(faulty.root, out, analyse=threshold_analyse, settings=RULES, progress=False)
    assert sorted(calls.read_text().split()) == ["P03DIR", "P05DUP", "P09FALL"]
    assert (s.up_to_date, s.done, s.failed) == (2, 3, 2)
    assert not half.exists() and not (out / LOCK).exists()
    assert _cohort(out) == _cohort(reference[0])


def _same_outputs(a: Path, b: Path) -> None:
    assert _cohort(a) == _cohort(b)
    ra, rb = _results(a), _results(b)
    assert ra == rb and set(ra) == DONE
    for pid in ra:
        la = Volume.read(a / Path(_by_patient(a)[pid]["result"]).parent / "labels.nii.gz")
        lb = Volume.read(b / Path(_by_patient(b)[pid]["result"]).parent / "labels.nii.gz")
        assert la.same_grid(lb) and np.array_equal(la.array, lb.array)


def test_jobs_processes_same_as_serial(faulty, reference, tmp_path):
    s = run_scan(faulty.root, tmp_path / "out", analyse=threshold_analyse, settings=RULES, jobs=2, progress=False)
    assert (s.done, s.failed, s.skipped) == (5, 2, 2)
    workers = {e.get("worker") for e in _manifest(tmp_path / "out")["studies"].values() if e["status"] == "done"}
    assert str(os.getpid()) not in {w.split(":")[-1] for w in workers}  # ran in worker processes
    _same_outputs(tmp_path / "out", reference[0])


def test_pipelined_same_as_serial(faulty, reference, tmp_path):
    s = run_scan(faulty.root, tmp_path / "out", analyse=threshold_analyse, settings=RULES, pipelined=True,
                 progress=False)
    assert (s.done, s.failed, s.skipped, s.exit_code) == (5, 2, 2, 1)
    _same_outputs(tmp_path / "out", reference[0])


def test_pipelined_split_analysis_same_results_and_a_failing_step_fails_only_its_study(
        faulty, reference, tmp_path, monkeypatch):
    """An analyse function split in three steps (as cacpipe.pipeline.analyse_series is): the steps run
    for different studies at the same time; the results are the serial ones, and a study whose middle
    step raises is recorded with its reason while the others go on."""
    import threading

    steps: list[tuple[str, str, str]] = []

    def prepare(series, settings):
        steps.append(("prepare", series.identity.patient_id, threading.current_thread().name))
        return series, settings

    def infer(state):
        steps.append(("infer", state[0].identity.patient_id, threading.current_thread().name))
        if state[0].identity.patient_id == "P05DUP":
            raise ConfigError("synthetic failure of the network step")
        return state

    def finish(state, out_dir):
        steps.append(("finish", state[0].identity.patient_id, threading.current_thread().name))
        return threshold_analyse(state[0], out_dir, state[1])

    monkeypatch.setattr(threshold_analyse, "stages", (prepare, infer, finish), raising=False)
    out = tmp_path / "out"
    s = run_scan(faulty.root, out, analyse=threshold_analyse, settings=RULES, pipelined=True, progress=False)
    assert (s.done, s.failed, s.skipped) == (4, 3, 2)
    entry = _by_patient(out)["P05DUP"]
    assert entry["status"] == "failed" and entry["reason"] == "synthetic failure of the network step"
    assert entry["result"] is None and not list(out.rglob("*P05DUP*/result.json"))
    ref, got = _results(reference[0]), _results(out)
    assert set(got) == DONE - {"P05DUP"} and all(got[p] == ref[p] for p in got)
    ref_rows, rows = _cohort(reference[0]), _cohort(out)
    assert all(rows[p] == ref_rows[p] for p in rows if p != "P05DUP")
    # Each step ran in its own thread, for every study that got that far (P04MISS/P06TRUNC fail to load).
    threads = {name: {t for n, _, t in steps if n == name} for name in ("prepare", "infer", "finish")}
    assert threads["infer"] == {"MainThread"} and threads["prepare"] == {"cacpipe-open"}
    assert threads["finish"] == {"cacpipe-close"}
    assert sorted(p for n, p, _ in steps if n == "finish") == sorted(DONE - {"P05DUP"})


def test_pipelined_needs_one_worker(faulty, tmp_path):
    with pytest.raises(ConfigError, match="--pipeline"):
        run_scan(faulty.root, tmp_path / "out", analyse=threshold_analyse, settings=RULES, jobs=2, pipelined=True,
                 progress=False)


def test_dask_cluster_same_as_local(faulty, reference, tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        s = run_scan(faulty.root, tmp_path / "out", analyse=threshold_analyse, settings=RULES,
                     scheduler=cluster.scheduler_address, progress=False)
    assert (s.done, s.failed, s.skipped, s.exit_code) == (5, 2, 2, 1)
    _same_outputs(tmp_path / "out", reference[0])


def test_dead_worker_fails_only_its_study(faulty, tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_TEST_CRASH", "P02ZIP")  # spawned workers inherit the environment
    s = run_scan(faulty.root, tmp_path / "out", analyse=threshold_analyse, settings=RULES, jobs=2, progress=False)
    entries = _by_patient(tmp_path / "out")
    assert entries["P02ZIP"]["status"] == "failed" and "worker process died" in entries["P02ZIP"]["reason"]
    assert {p for p, e in entries.items() if e["status"] == "done"} == DONE - {"P02ZIP"}
    assert s.failed == 3


def test_unpicklable_analyse_refused_for_workers(faulty, tmp_path):
    with pytest.raises(ConfigError, match="module level"):
        run_scan(faulty.root, tmp_path / "out", analyse=lambda *a: {}, settings=RULES, jobs=2, progress=False)


def test_lost_manifest_recovered_from_results(faulty, reference, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    (out / "manifest.json").unlink()  # e.g. killed after a result was renamed into place, before the manifest
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CACPIPE_TEST_CALLS", str(calls))
    s = run_scan(faulty.root, out, analyse=threshold_analyse, settings=RULES, progress=False)
    assert (s.up_to_date, s.processed) == (5, 2) and not calls.exists()
    assert _cohort(out) == _cohort(reference[0])
