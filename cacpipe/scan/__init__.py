"""Batch runner: a PACS export in, per-study results out; resumable, parallel, distributed.

Modules by concern: ``layout`` (output folder names, atomic writes), ``manifest`` (manifest,
lock, resume decisions), ``plan`` (discover, select, what to redo), ``worker`` (one study),
``executors`` (serial, processes, Dask), ``cohort`` (cohort.csv), ``run`` (``run_scan``).
See docs/scan.md.
"""

from .layout import COHORT, LOCK, MANIFEST, RESULT
from .run import ScanSummary, run_scan
from .worker import Analyse, StudyTask, process_study

__all__ = ["COHORT", "LOCK", "MANIFEST", "RESULT", "Analyse", "ScanSummary", "StudyTask", "process_study", "run_scan"]
