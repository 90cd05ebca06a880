"""One scan of the hostile export (tests/hostile_exports.py): every fault answered with a clear reason.

The scan runs in a child process under an address-space limit (RLIMIT_AS) and a timeout: reading a
zip bomb or a deflate bomb whole would end it in MemoryError, opening the named pipe would hang it.
The batch must go on, the control study must be done, nothing may be written outside --out, and no
traceback may appear, in the manifest or on stderr.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hostile_exports import build_hostile_export

from cacpipe.cli import cli
from cacpipe.errors import ConfigError
from cacpipe.ingest import discover
from cacpipe.ingest import plausibility as rules
from cacpipe.scan import run_scan
from cacpipe.scan.layout import RUN_FILES, WINDOWS_DEVICES, safe_name, study_folders

AS_LIMIT = 1536 << 20  # the scan of this export peaks near 750 MB of address space; a 1 GiB read cannot fit
TIMEOUT_S = 300
TESTS, REPO = Path(__file__).parent, Path(__file__).parents[1]
SCAN = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
sys.path[:0] = [{repo!r}, {tests!r}]
from export_faults import MIN_SLICES, threshold_analyse
from cacpipe.config import Settings
from cacpipe.scan import run_scan
s = run_scan(sys.argv[1], sys.argv[2], analyse=threshold_analyse,
             settings=Settings().merged({{"selection": {{"min_slices": MIN_SLICES}}}}), progress=False)
print(json.dumps({{"exit": s.exit_code, "done": s.done, "failed": s.failed, "up_to_date": s.up_to_date,
                  "studies": s.studies}}))
sys.exit(s.exit_code)
"""


def scan_in_child(export: Path, out: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``run_scan`` in a child process under the address-space limit and the timeout."""
    script = SCAN.format(limit=AS_LIMIT, repo=str(REPO), tests=str(TESTS))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script, str(export), str(out)], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env)
    lines = proc.stdout.strip().splitlines()
    return proc, (json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {})


def _tree(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for f in filenames:
            st = os.lstat(Path(dirpath, f))
            out[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return build_hostile_export(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def scanned(hostile):
    out = hostile.root.parent / "out"
    before = _tree(hostile.root.parent, out)
    proc, summary = scan_in_child(hostile.root, out)
    return out, proc, summary, before


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _entries(out: Path) -> dict[tuple[str, str], dict]:
    return {(e["patient_id"], e["study_uid"]): e for e in _manifest(out)["studies"].values()}


@pytest.mark.slow
def test_scan_ends_cleanly_under_memory_limit(hostile, scanned):
    out, proc, summary, _ = scanned
    assert proc.returncode == 1, proc.stderr[-3000:]  # studies failed (on purpose), the run itself did not
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr[-3000:]
    assert summary["studies"] == len(hostile.expected)
    assert summary["done"] == sum(s == "done" for s, _ in hostile.expected.values())
    assert all(not e.get("detail") for e in _manifest(out)["studies"].values())  # no unexpected exception
    assert _entries(out)[hostile.control]["status"] == "done"


def test_every_fault_has_its_reason(hostile, scanned):
    out = scanned[0]
    entries = _entries(out)
    assert set(entries) == set(hostile.expected)  # nothing lost, nothing extra (the symlinked study stays out)
    for key, (status, part) in hostile.expected.items():
        e = entries[key]
        assert e["status"] == status, (key, e["status"], e["reason"])
        assert part in e["reason"] and "\n" not in e["reason"], (key, e["reason"])
    problems = _manifest(out)["problems"]
    for source_part, reason_part in hostile.problems:
        assert any(source_part in p["source"] and reason_part in p["reason"] for p in problems), (source_part, problems)


def probe_outcomes(hostile, out: Path) -> dict[str, str]:
    """Every probe of the corpus and what it came to: 'clean', 'weak: why' or 'FAILING: what happened'."""
    m = _manifest(out)
    entries = _entries(out)
    outcome: dict[str, str] = {}
    for key, (status, part) in hostile.expected.items():
        e = entries.get(key)
        name = f"study {key[0]!r}/{key[1]}"
        if e is None:
            outcome[name] = "FAILING: not in the manifest"
            continue
        got = f"{e['status']}: {e.get('reason', '')}"
        wrong = [f"status {e['status']} (expected {status})"] if e["status"] != status else []
        if part not in (e.get("reason") or "") or "\n" in (e.get("reason") or ""):
            wrong.append(f"reason without {part!r}")
        if e.get("detail"):
            wrong.append("an unexpected exception")
        if key in hostile.flags and hostile.flags[key] not in e.get("flags", []):
            wrong.append(f"flag {hostile.flags[key]} missing")
        if key in hostile.not_flags and hostile.not_flags[key] in e.get("flags", []):
            wrong.append(f"flag {hostile.not_flags[key]} raised")
        outcome[name] = (f"FAILING: {'; '.join(wrong)} ({got[:200]})" if wrong
                         else f"weak: {hostile.weak[key]}" if key in hostile.weak else "clean")
    for source_part, reason_part in hostile.problems:
        ok = any(source_part in p["source"] and reason_part in p["reason"] for p in m["problems"])
        near = [p for p in m["problems"] if source_part in p["source"]]
        outcome[f"file {source_part}"] = "clean" if ok else f"FAILING: {near[:2] or 'no problem reported'}"
    for link in hostile.folder_links:
        target = str(hostile.root / link)
        ok = any(entry.startswith(f"{target} -> ") for entry in m.get("folder_links", []))
        outcome[f"link {link}"] = "clean" if ok else f"FAILING: not counted ({m.get('folder_links')})"
    return outcome


def test_probe_tally(hostile, scanned):
    """The corpus' size and result: ``pytest tests/test_hostile_exports.py -k tally -s`` prints the tally."""
    outcome = probe_outcomes(hostile, scanned[0])
    assert len(outcome) == hostile.n_probes >= 83
    counts = {k: sum(v.startswith(k) for v in outcome.values()) for k in ("clean", "weak", "FAILING")}
    print(f"\nhostile corpus: {len(outcome)} probes: {counts['clean']} clean, {counts['weak']} weak, "
          f"{counts['FAILING']} failing")
    for name, v in outcome.items():
        if v != "clean":
            print(f"  {name}: {v}")
    assert counts["FAILING"] == 0, "\n".join(f"{k}: {v}" for k, v in outcome.items() if v.startswith("FAILING"))


def test_mixed_patients_refused_naming_both(hostile, scanned):
    reasons = [e["reason"] for (pid, _), e in _entries(scanned[0]).items() if pid in ("MIXA", "MIXB")]
    assert len(reasons) == 2 and all("'MIXA'" in r and "'MIXB'" in r for r in reasons)


def test_duplicate_instances_compared(hostile, scanned):
    entries = {pid: e for (pid, _), e in _entries(scanned[0]).items()}
    assert "duplicate_instances" in entries["DUPSAME"]["flags"]
    reason = entries["DUPDIFF"]["reason"]
    assert "dup-DUPDIFF/" in reason and "dup-DUPDIFF-copy/" in reason


def test_each_study_has_its_own_folder_and_result(hostile, scanned):
    out = scanned[0]
    done = {k: e for k, e in _entries(out).items() if e["status"] == "done"}
    folders = [e["result"] for e in done.values()]
    assert len(set(f.casefold() for f in folders)) == len(folders)
    for (pid, uid), e in done.items():
        res = json.loads((out / e["result"]).read_text(encoding="utf-8"))
        assert (res["study"]["patient_id"], res["study"]["study_uid"]) == (pid, uid)
    with open(out / "cohort.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(hostile.expected) and len({(r["study_uid"], r["status"]) for r in rows}) >= 30
    assert sorted(r["study_uid"] for r in rows) == sorted(uid for _, uid in hostile.expected)
    # The run's own files stay files; no folder carries a reserved name.
    assert (out / "cohort.csv").is_file() and (out / "manifest.json").is_file()
    for p in out.iterdir():
        if p.is_dir():
            assert p.name not in RUN_FILES and p.name.split(".")[0].upper() not in WINDOWS_DEVICES, p.name


def test_identifiers_kept_as_text_and_csv_neutralised(hostile, scanned):
    out = scanned[0]
    keys = set(_manifest(out)["studies"])
    assert any(k.startswith("SMITH\\JOHN/") for k in keys) and not any("['" in k for k in keys)
    assert any(k.startswith("A%2FB/") for k in keys)
    with open(out / "cohort.csv", newline="", encoding="utf-8") as f:
        cells = [r["patient_id"] for r in csv.DictReader(f)]
    risky = [c for c in cells if c.lstrip("'")[:1] and c.lstrip("'")[0] in "=+-@"]
    assert len(risky) == 2 and all(c.startswith("'") for c in risky)


def test_nothing_written_outside_out(hostile, scanned):
    out, _, _, before = scanned
    assert _tree(hostile.root.parent, out) == before


def test_rerun_keeps_folders_and_redoes_nothing_done(hostile, scanned, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(scanned[0], out, symlinks=True)
    folders = {k: e.get("result") for k, e in _entries(out).items()}
    proc, summary = scan_in_child(hostile.root, out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert summary["done"] == 0 and summary["up_to_date"] == scanned[2]["done"]
    assert {k: e.get("result") for k, e in _entries(out).items()} == folders


def test_result_overwritten_by_an_older_version_is_redone(hostile, scanned, tmp_path):
    """Before unique folders, `X` and `X.` shared one folder: the manifest said done for both."""
    out = tmp_path / "out"
    shutil.copytree(scanned[0], out, symlinks=True)
    m = _manifest(out)
    a = next(k for k, e in m["studies"].items() if e["study_uid"] == "1.2.840.99.7")
    b = next(k for k, e in m["studies"].items() if e["study_uid"] == "1.2.840.99.7.")
    shared = out / Path(m["studies"][a]["result"]).parent
    shutil.rmtree(shared)
    shutil.move(out / Path(m["studies"][b]["result"]).parent, shared)  # B's result in A's folder
    m["studies"][b]["result"] = m["studies"][a]["result"]
    (out / "manifest.json").write_text(json.dumps(m))
    proc, summary = scan_in_child(hostile.root, out)
    assert summary["done"] == 2, proc.stderr[-2000:]
    for key in (a, b):
        e = _manifest(out)["studies"][key]
        res = json.loads((out / e["result"]).read_text())
        assert e["status"] == "done" and res["study"]["study_uid"] == e["study_uid"]


def test_symlinks_out_of_the_export_only_on_request(hostile, tmp_path):
    ids = {h.patient_id for h in discover(hostile.root, tmp_path / "w").headers}
    assert "OUTSIDE" not in ids and "CONTROL" in ids
    ids = {h.patient_id for h in discover(hostile.root, tmp_path / "w", follow_symlinks=True).headers}
    assert "OUTSIDE" in ids


def _read_only_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    # root writes through permission bits: use a folder of a read-only file system
    for cand in (Path("/sys/kernel"), Path("/proc/sys")):
        try:
            (cand / ".cacpipe-probe").touch()
        except OSError:
            if cand.is_dir():
                return cand
    pytest.skip("no read-only folder available to root here")


def test_unusable_output_folder_refused_in_one_line(hostile, tmp_path):
    ro = _read_only_folder(tmp_path)
    cases = [(ro, "not a writable folder"), (hostile.root / "results", "inside the export"),
             (hostile.root, "inside the export"), (hostile.root.parent, "the export")]
    for out, part in cases:
        with pytest.raises(ConfigError, match=part):
            run_scan(hostile.root, out, analyse=lambda *a: None, progress=False)
        r = CliRunner().invoke(cli, ["scan", str(hostile.root), "--out", str(out), "--no-progress"])
        assert r.exit_code == 2 and part in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (hostile.root / "results").exists()


# --- the rules on their own -------------------------------------------------------------------

def test_folder_names_unique_stable_and_safe():
    assert safe_name("P01GOOD") == "P01GOOD" and safe_name("1.2.840.99.7") == "1.2.840.99.7"
    names = {safe_name(x) for x in ("1.2.840.99.7", "1.2.840.99.7.", "A B", "A_B", "", "UNKNOWN", "CON", "con.txt",
                                    "cohort.csv", "x" * 70, "x" * 64 + "y")}
    assert len(names) == 11 and all(len(n) <= 64 and n and not n.startswith(".") for n in names)
    assert safe_name("M\udcfcller") == safe_name("M\udcfcller") != safe_name("M\udce4ller")  # undecodable bytes
    f = study_folders([("abc", "1"), ("ABC", "1"), ("P", "1.2"), ("P", "1.2.")])
    assert len({v.casefold() for v in f.values()}) == 4 and f[("P", "1.2")] == "P/1.2"


def test_plausibility_rules_derived_from_field_of_view():
    assert rules.pixel_spacing_problem((0.7, 0.7), 512, 512) is None
    assert rules.pixel_spacing_problem((0.19, 0.19), 512, 512) and rules.pixel_spacing_problem((1.6, 1.6), 512, 512)
    assert "0.20-1.56 mm" in rules.pixel_spacing_problem((25.0, 25.0), 512, 512)
    assert rules.rescale_problem("1", "-1024") is None and rules.rescale_problem(0.5, -1000) is None
    for slope, icpt in ((0, 0), (-1, 0), (float("nan"), 0), (float("inf"), 0), (1, float("nan")), ("x", 0)):
        assert rules.rescale_problem(slope, icpt), (slope, icpt)
    assert rules.orientation_problem((1, 0, 0, 0, 1, 0)) is None
    assert rules.orientation_problem((1, 0, 0, 0, 0.966, -0.259)) is None  # gantry tilt 15 deg
    assert "orthonormal" in rules.orientation_problem((1, 0, 0, 0.3, 0.954, 0))
    chest = np.full((4, 32, 32), -1000.0)
    chest[:, 8:24, 8:24] = 40.0
    assert rules.hu_problem(chest) is None
    assert "signed" in rules.hu_problem(np.where(chest < 0, chest + 65536, chest))
    assert "no air" in rules.hu_problem(chest + 1024)
