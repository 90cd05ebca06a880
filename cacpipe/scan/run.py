"""``run_scan``: a PACS export (or one CT) in, per-study results out; resumable, parallel, distributed."""

from __future__ import annotations

import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import EXIT_NOTHING_TO_SCORE, EXIT_OK, EXIT_STUDY_FAILED, ConfigError
from .checks import check_output, local_devices
from .cohort import write_cohort
from .delivery import NOTHING, SENT, Sender, deliver_entry
from .executors import execute, record_outcome
from .inputs import plan_image, plan_image_folder, resolve_input
from .layout import COHORT, MANIFEST, WORK, cleanup_stale
from .manifest import ManifestWriter, ScanLock, load_manifest
from .plan import analyse_name, plan
from .worker import Analyse

MAX_LINK_LINES = 5  # folder links named one per line in the summary; all of them are in manifest.json


@dataclass
class ScanSummary:
    """What one ``run_scan`` did."""

    out: Path
    input: str = ""  # what was scanned, in words
    studies: int = 0
    processed: int = 0  # analysed in this run (done + failed)
    done: int = 0  # newly done in this run
    up_to_date: int = 0  # done before with the same inputs and settings
    failed: int = 0
    skipped: int = 0
    problems: int = 0  # files that could not be read (see manifest["problems"])
    ignored_files: int = 0
    folder_links: list[str] = field(default_factory=list)  # links to folders in the export: not followed
    failures: list[tuple[str, str]] = field(default_factory=list)  # (study key, reason)
    seconds: float = 0.0
    kept: list[tuple[str, str]] = field(default_factory=list)  # (study key, why): reader-corrected, not redone
    send_target: str | None = None  # --send: the PACS every done study's outputs go to
    sent: int = 0  # studies whose outputs reached it in this run
    nothing_to_send: int = 0  # done studies without DICOM outputs (image input, --no-dicom-out, blank UIDs)
    send_pending: list[tuple[str, str]] = field(default_factory=list)  # (study key, why not sent)

    @property
    def scorable(self) -> int:
        """Studies with a series to score (analysed now, or up to date)."""
        return self.studies - self.skipped

    @property
    def nothing_to_score(self) -> bool:
        return self.scorable == 0

    @property
    def exit_code(self) -> int:
        """1 when a study failed, 3 when the input held nothing to score, else 0 (cacpipe.errors.EXIT_CODES)."""
        if self.failed or self.send_pending:
            return EXIT_STUDY_FAILED
        return EXIT_NOTHING_TO_SCORE if self.nothing_to_score else EXIT_OK

    def _links_text(self) -> str:
        """The count of links to folders that were not followed (nothing when there were none)."""
        n = len(self.folder_links)
        return f", {n} folder link{'' if n == 1 else 's'} not followed" if n else ""

    def nothing_to_score_message(self) -> str:
        if self.studies == 0:
            return (f"nothing to score: no DICOM CT study found in {self.input} ({self.problems} unreadable files, "
                    f"{self.ignored_files} non-DICOM files ignored{self._links_text()}); give a PACS export, a DICOM series folder, a zip, "
                    "a DICOMDIR or a NIfTI/NRRD CT file")
        return (f"nothing to score: none of the {self.studies} studies in {self.input} has a series that meets the "
                f"selection rules (reasons in {self.manifest}; `cacpipe scan --dry-run` lists them)")

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST

    @property
    def cohort(self) -> Path:
        return self.out / COHORT

    def lines(self) -> list[str]:
        out = [f"{self.studies} {'study' if self.studies == 1 else 'studies'}: {self.done} done now, {self.up_to_date} already done, "
               f"{self.failed} failed, {self.skipped} skipped; {self.problems} unreadable files, "
               f"{self.ignored_files} non-DICOM files ignored{self._links_text()} ({self.seconds:.1f} s)"]
        out += [f"FAILED {k}: {r}" for k, r in self.failures]
        out += [f"LINK NOT FOLLOWED {link}" for link in self.folder_links[:MAX_LINK_LINES]]
        if len(self.folder_links) > MAX_LINK_LINES:
            out.append(f"... and {len(self.folder_links) - MAX_LINK_LINES} more folder links ({self.manifest})")
        out += [f"KEPT {k}: {r}" for k, r in self.kept]
        if self.send_target:
            out.append(f"PACS {self.send_target}: {self.sent} stud{'y' if self.sent == 1 else 'ies'} sent, "
                       f"{len(self.send_pending)} pending"
                       + (f", {self.nothing_to_send} without DICOM outputs to send" if self.nothing_to_send else ""))
            out += [f"SEND PENDING {k}: {r}" for k, r in self.send_pending]
            if self.send_pending:
                out.append(f"the results are kept; `cacpipe review send {self.out}` sends what is pending")
        if self.nothing_to_score:
            out.append(self.nothing_to_score_message())
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
    devices: list[str] | None = None,
    patient_id: str | None = None,
    pipelined: bool = False,
    ids_csv: str | Path | None = None,
    redo_corrected: bool = False,
) -> ScanSummary:
    """Scan ``export`` into ``out``; resumable (only failed, new or changed studies are redone).

    ``export`` is a PACS export folder, a DICOM series folder, a zip, a DICOMDIR, or one CT image
    file (NIfTI/NRRD/MHA; its patient id is ``patient_id`` or the file name).
    ``analyse(series, out_dir, settings) -> StudyResult`` writes one study's outputs into
    ``out_dir`` (default: ``cacpipe.pipeline.analyse_series``). ``devices`` gives one device per
    local worker process (``checks.worker_devices``; default: ``jobs`` workers on
    ``settings.device``; one entry runs studies in this process). ``scheduler`` (a Dask
    distributed address) runs studies on that cluster, whose workers must see ``export`` and
    ``out`` under the same paths. ``pipelined`` (one local worker only) overlaps the next study's
    loading and heart crop and the previous study's quantification, writing and review with the
    current study's segmentation (``executors.run_pipelined``); results are the same.
    A study whose folder holds a reader-corrected result is never redone (kept, and said so in
    ``ScanSummary.kept``), not even with ``force``, unless ``redo_corrected``: then the corrected
    folder is moved whole to ``OUT/superseded/`` before the new result is installed.
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    out = Path(out)
    analyse = analyse or default_analyse()
    settings = settings or Settings()
    inp = resolve_input(export, patient_id, ids_csv)
    if devices is None:
        devices = [settings.device] if scheduler else local_devices(settings.device, jobs)
    if not devices:
        raise ConfigError("no worker device given")
    if pipelined and (len(devices) > 1 or scheduler):
        raise ConfigError("--pipeline runs the studies of one worker in this process; use it with --jobs 1, "
                          "one device and no --scheduler")
    if len(devices) > 1 or scheduler:
        try:
            pickle.dumps(analyse)
        except Exception as exc:
            raise ConfigError(f"the analyse function {analyse_name(analyse)} cannot be sent to worker processes "
                              f"({exc}); define it at module level") from exc
    check_output(out, inp)
    summary = ScanSummary(out=out, input=inp.describe())
    with ScanLock(out):
        cleanup_stale(out)
        manifest = load_manifest(out)
        writer = ManifestWriter(out, manifest)
        (out / WORK).mkdir(exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="extract-", dir=out / WORK))
        try:
            if inp.kind == "image":
                tasks = plan_image(inp, out, manifest, analyse, settings, force, summary, patient_id,
                                   redo_corrected=redo_corrected)
            elif inp.kind == "images":
                tasks = plan_image_folder(inp, out, manifest, analyse, settings, force, summary,
                                          redo_corrected=redo_corrected)
            else:
                tasks = plan(inp.root, out, manifest, analyse, settings, force, workdir, summary, progress,
                             redo_corrected=redo_corrected)
            writer.save()
            by_key = {t.key: t for t in tasks}
            bar = tqdm(total=len(tasks), unit="study", desc="cacpipe scan", disable=not progress or not tasks,
                       dynamic_ncols=True)

            sender = Sender() if settings.review.send else None
            summary.send_target = settings.review.send

            def deliver(key: str) -> None:
                state = deliver_entry(sender, out, key, manifest["studies"][key], settings.review.send)
                if state is None:
                    return
                if state["state"] == SENT:
                    summary.sent += 1
                elif state["state"] == NOTHING:
                    summary.nothing_to_send += 1
                else:
                    summary.send_pending.append((key, state.get("error") or "not sent"))

            def record(outcome: dict) -> None:
                record_outcome(outcome, by_key, manifest, out, summary, bar)
                if sender is not None:  # after the result is recorded: a failed send never costs it
                    deliver(outcome["key"])
                writer.save(throttled=True)

            try:
                execute(tasks, devices, scheduler, record, pipelined=pipelined)
            finally:
                bar.close()
            if sender is not None:  # studies up to date from earlier runs whose outputs did not reach it yet
                for key, entry in sorted(manifest["studies"].items()):
                    if entry.get("in_last_scan") and key not in by_key:
                        deliver(key)
        finally:
            writer.save()
            write_cohort(out, manifest)
            shutil.rmtree(out / WORK, ignore_errors=True)
    summary.seconds = time.perf_counter() - t_start
    return summary
