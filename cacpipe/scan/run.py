"""``run_scan``: a PACS export in, per-study results out; resumable, parallel, distributed."""

from __future__ import annotations

import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from .cohort import write_cohort
from .executors import execute, record_outcome
from .layout import COHORT, MANIFEST, WORK, check_output_folder, cleanup_stale
from .manifest import ManifestWriter, ScanLock, load_manifest
from .plan import analyse_name, plan
from .worker import Analyse


@dataclass
class ScanSummary:
    """What one ``run_scan`` did."""

    out: Path
    studies: int = 0
    processed: int = 0  # analysed in this run (done + failed)
    done: int = 0  # newly done in this run
    up_to_date: int = 0  # done before with the same inputs and settings
    failed: int = 0
    skipped: int = 0
    problems: int = 0  # files that could not be read (see manifest["problems"])
    ignored_files: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (study key, reason)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 when no study failed, 1 otherwise."""
        return 1 if self.failed else 0

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST

    @property
    def cohort(self) -> Path:
        return self.out / COHORT

    def lines(self) -> list[str]:
        out = [f"{self.studies} studies: {self.done} done now, {self.up_to_date} already done, "
               f"{self.failed} failed, {self.skipped} skipped; {self.problems} unreadable files, "
               f"{self.ignored_files} non-DICOM files ignored ({self.seconds:.1f} s)"]
        out += [f"FAILED {k}: {r}" for k, r in self.failures]
        out += [f"manifest: {self.manifest}", f"cohort:   {self.cohort}"]
        return out


def default_analyse() -> Analyse:
    """The full pipeline (stage 1 + stage 2 + quantification), imported only when needed."""
    from ..pipeline import analyse_series

    return analyse_series


def run_scan(
    export: str | Path,
    out: str | Path,
    analyse: Analyse | None = None,
    jobs: int = 1,
    scheduler: str | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    *,
    force: bool = False,
) -> ScanSummary:
    """Scan a PACS export into ``out``; resumable (only failed, new or changed studies are redone).

    ``analyse(series, out_dir, settings) -> StudyResult`` writes one study's outputs into
    ``out_dir`` (default: ``cacpipe.pipeline.analyse_series``). ``jobs`` > 1 runs studies in that
    many processes; ``scheduler`` (a Dask distributed address) runs them on that cluster, whose
    workers must see ``export`` and ``out`` under the same paths.
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    export, out = Path(export), Path(out)
    analyse = analyse or default_analyse()
    settings = settings or Settings()
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1 or scheduler:
        try:
            pickle.dumps(analyse)
        except Exception as exc:
            raise ConfigError(f"the analyse function {analyse_name(analyse)} cannot be sent to worker processes "
                              f"({exc}); define it at module level") from exc
    check_output_folder(export, out)
    summary = ScanSummary(out=out)
    with ScanLock(out):
        cleanup_stale(out)
        manifest = load_manifest(out)
        writer = ManifestWriter(out, manifest)
        (out / WORK).mkdir(exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="extract-", dir=out / WORK))
        try:
            tasks = plan(export, out, manifest, analyse, settings, force, workdir, summary, progress)
            writer.save()
            by_key = {t.key: t for t in tasks}
            bar = tqdm(total=len(tasks), unit="study", desc="cacpipe scan", disable=not progress or not tasks,
                       dynamic_ncols=True)

            def record(outcome: dict) -> None:
                record_outcome(outcome, by_key, manifest, out, summary, bar)
                writer.save(throttled=True)

            try:
                execute(tasks, jobs, scheduler, progress, record)
            finally:
                bar.close()
        finally:
            writer.save()
            write_cohort(out, manifest)
            shutil.rmtree(out / WORK, ignore_errors=True)
    summary.seconds = time.perf_counter() - t_start
    return summary
