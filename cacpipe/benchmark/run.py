"""``run_benchmark``: a public dataset as distributed in, cacpipe's accuracy on it out.

OUT holds::

    reference/<study uid>/labels.nii.gz (+ conversion.json)   the reference as a six-class map
    reference/by_case/<case>.json                             one conversion report per case
    reference.csv                                             the reference table `cacpipe evaluate` reads
    scan/                                                     exactly what `cacpipe scan` writes (resumable)
    evaluation/                                               `cacpipe evaluate` outputs (every table, report.html)
    benchmark.json, benchmark_metrics.csv, benchmark_cases.csv, benchmark_report.html

Steps: layout check (exit 2, one line), conversion (redone only for changed sources), the scan
(per case through ``commands.scan.run_logged``: the same start checks, ingestion, pipeline,
outputs and resume as ``cacpipe scan``), evaluation (``cacpipe.evaluation.evaluate``), report.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..csvout import write_csv
from ..errors import CacpipeError
from ..scan.layout import write_atomic
from .convert import REFERENCE, convert_case
from .layout import find_cases

SCAN = "scan"
EVALUATION = "evaluation"
REFERENCE_CSV = "reference.csv"
CASE_TIMES = "case_seconds.json"


@dataclass
class BenchmarkSummary:
    out: Path
    cases: int = 0
    dataset_cases: int = 0  # all cases of the dataset folder (before --limit)
    converted: int = 0
    conversion_failed: list[tuple[str, str]] = field(default_factory=list)
    scanned: int = 0
    scan_failed: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        from ..errors import EXIT_OK, EXIT_STUDY_FAILED

        return EXIT_STUDY_FAILED if (self.conversion_failed or self.scan_failed) else EXIT_OK

    def lines(self) -> list[str]:
        out = [f"{self.cases} case(s): {self.converted} converted, {len(self.conversion_failed)} conversion(s) failed, "
               f"{self.scanned} scanned, {len(self.scan_failed)} scan(s) failed"]
        out += [f"CONVERSION FAILED {c}: {r}" for c, r in self.conversion_failed]
        out += [f"SCAN FAILED {c}: {r}" for c, r in self.scan_failed]
        out += self.notes
        if self.report:
            out.append(f"report: {self.report}")
        return out


def benchmark_settings(settings: Settings, dataset: str, subset: str, given: set[str]) -> tuple[Settings, list[str]]:
    """Selection rules for cardiac and non-gated public data, unless the user set them.

    Gated calcium-scoring scans have 40-90 slices (the scan default skips series under 100) and
    non-gated COCA is mostly 5 mm (the default accepts up to 3 mm): both would be skipped.
    """
    changes: dict = {}
    notes = []
    default = Settings().selection
    if settings.selection.min_slices != default.min_slices:  # set in a --settings file
        given = given | {"selection.min_slices"}
    if settings.selection.max_spacing_mm != default.max_spacing_mm:
        given = given | {"selection.max_spacing_mm"}
    if "selection.min_slices" not in given:
        changes["min_slices"] = 20
        notes.append("selection.min_slices set to 20 (cardiac scans have fewer than the scan default of 100 slices)")
    if subset == "nongated" and "selection.max_spacing_mm" not in given:
        changes["max_spacing_mm"] = 5.0
        notes.append("selection.max_spacing_mm set to 5 (non-gated COCA is mostly 5 mm)")
    if changes:
        settings = settings.merged({"selection": changes})
    return settings, notes


def run_benchmark(dataset: str, root: str | Path, out: str | Path, settings: Settings, *, subset: str | None = None,
                  limit: int | None = None, force: bool = False, progress: bool = True, analyse=None,
                  given: set[str] | None = None, html: bool = True) -> BenchmarkSummary:
    """Convert, scan, evaluate and report ``dataset`` under ``root`` into ``out`` (see module docstring)."""
    from tqdm import tqdm

    from ..commands.scan import run_logged
    from ..scan.checks import start_checks
    from ..scan.inputs import resolve_input

    out = Path(out)
    cases, notes = find_cases(dataset, root, subset)  # layout checked here: exit 2 with one line
    subset = cases[0].subset
    n_all = len(cases)
    if limit is not None:
        cases = cases[:limit]
    settings, set_notes = benchmark_settings(settings, dataset, subset, given or set())
    summary = BenchmarkSummary(out=out, cases=len(cases), notes=notes + set_notes, dataset_cases=n_all)
    # The scan's start checks (device, model, heart weights, output folder) before any conversion.
    first = cases[0]
    start_checks(resolve_input(first.image, first.case_id if first.is_image_file else None), out / SCAN, settings,
                 pipeline=analyse is None)
    records = []
    for case in tqdm(cases, desc="benchmark: convert", unit="case", disable=not progress, dynamic_ncols=True):
        rec = convert_case(case, out, settings, force=force)
        records.append(rec)
        if rec["status"] == "done":
            summary.converted += 1
        else:
            summary.conversion_failed.append((case.case_id, rec["reason"]))
    rows = [r["row"] for r in records if r["status"] == "done"]
    if not rows:
        raise CacpipeError("no case could be converted: " + "; ".join(f"{c}: {r}" for c, r in summary.conversion_failed[:3]))
    write_csv(out / REFERENCE_CSV, rows, _columns(rows))
    times_path = out / CASE_TIMES
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    todo = [(c, r) for c, r in zip(cases, records, strict=True) if r["status"] == "done"]
    for case, _rec in tqdm(todo, desc="benchmark: scan", unit="case", disable=not progress, dynamic_ncols=True):
        t0 = time.perf_counter()
        try:
            s = run_logged(case.image, out / SCAN, settings, analyse=analyse, progress=False, force=force,
                           patient_id=case.case_id if case.is_image_file else None, command="benchmark")
        except CacpipeError as exc:
            summary.scan_failed.append((case.case_id, str(exc).splitlines()[0]))
            continue
        if s.failed:
            summary.scan_failed += [(case.case_id, r) for _, r in s.failures]
        elif s.nothing_to_score:
            summary.scan_failed.append((case.case_id, s.nothing_to_score_message()))
        else:
            summary.scanned += 1
            if s.done:  # analysed now (not up to date from an earlier run): its time per case counts
                times[case.case_id] = round(time.perf_counter() - t0, 2)
    write_atomic(times_path, json.dumps(times, indent=1))
    from .report import evaluate_and_report

    summary.report = evaluate_and_report(dataset, subset, out, records, times, summary, html=html)
    return summary


def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


__all__ = ["REFERENCE", "BenchmarkSummary", "run_benchmark"]
