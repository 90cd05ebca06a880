"""What the command line shows and logs: one setup for the console, the log file and worker processes.

- ``cacpipe.report`` carries what a user reads: one line per finished study and the run's summary.
  It goes to stdout (``-q`` keeps only the summary), failures and errors to stderr, and all of it
  to the log file.
- Every other cacpipe logger goes to stderr from WARNING (``-v``: INFO, ``-vv``: DEBUG).
- Third-party libraries (nnU-Net, TotalSegmentator, torch, Dask, pydicom, ...) are quieted to
  errors, and their Python warnings hidden, unless ``-v`` (warnings) or ``-vv`` (everything).
- :func:`log_file` adds ``OUT/cacpipe.log``: the report lines plus cacpipe's INFO and every warning,
  with time stamps, appended run after run.

Console lines are written through ``tqdm.write`` so that they never break the progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

REPORT = "cacpipe.report"
NOTE = 25  # between INFO and WARNING: run summaries (shown even with -q)
logging.addLevelName(NOTE, "NOTE")

THIRD_PARTY = ("nnunetv2", "totalsegmentator", "torch", "dask", "distributed", "matplotlib", "PIL", "pydicom",
               "highdicom", "pynetdicom", "SimpleITK", "nibabel", "numexpr", "fsspec", "urllib3", "asyncio",
               "tornado", "h5py", "py.warnings", "statsmodels", "acvl_utils", "batchgenerators")

_TAG = "_cacpipe_handler"
_state = {"verbosity": 0}


def report() -> logging.Logger:
    """The logger of per-study lines (INFO, failures WARNING) and summaries (:data:`NOTE`)."""
    return logging.getLogger(REPORT)


class _ConsoleHandler(logging.Handler):
    """Writes to the current sys.stdout / sys.stderr (looked up per record: tests swap them) via tqdm."""

    def __init__(self, err: bool, level: int):
        super().__init__(level)
        self.err = err

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr if self.err else sys.stdout)
        except Exception:  # a closed stream must not break the run
            self.handleError(record)


def _remove_ours(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        if getattr(h, _TAG, False):
            logger.removeHandler(h)
            h.close()


def _tag(h: logging.Handler) -> logging.Handler:
    setattr(h, _TAG, True)
    return h


def console_level(verbosity: int) -> int:
    """The level of cacpipe's own messages on stderr for ``-q`` (-1), default (0), ``-v`` (1), ``-vv`` (2)."""
    return {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(max(-1, min(verbosity, 2)), logging.DEBUG)


def quiet_third_party(verbosity: int) -> None:
    """Third-party loggers and Python warnings: errors only, unless -v (warnings) or -vv (all)."""
    level = logging.ERROR if verbosity < 1 else logging.WARNING if verbosity == 1 else logging.DEBUG
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)  # warnings.warn(...) -> the "py.warnings" logger, quieted above
    if verbosity < 1:
        warnings.simplefilter("ignore")


def setup(verbosity: int = 0) -> None:
    """Configure the console for a command (idempotent: each call replaces the previous setup)."""
    _state["verbosity"] = verbosity
    root, cac, rep = logging.getLogger(), logging.getLogger("cacpipe"), report()
    for lg in (root, rep):
        _remove_ours(lg)
    err = _tag(_ConsoleHandler(err=True, level=console_level(verbosity)))
    err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbosity >= 2
                                       else "%(levelname)s: %(message)s"))
    root.addHandler(err)
    root.setLevel(min(console_level(verbosity), logging.INFO))
    cac.setLevel(min(console_level(verbosity), logging.INFO))  # INFO always reaches the log file
    out = _tag(_ConsoleHandler(err=False, level=NOTE if verbosity < 0 else logging.INFO))
    out.addFilter(lambda r: r.levelno < logging.WARNING)
    bad = _tag(_ConsoleHandler(err=True, level=logging.WARNING))
    for h in (out, bad):
        h.setFormatter(logging.Formatter("%(message)s"))
        rep.addHandler(h)
    rep.setLevel(logging.INFO)
    rep.propagate = False  # shown once, on stdout
    quiet_third_party(verbosity)


def verbosity() -> int:
    """The verbosity of the last :func:`setup` (worker processes are set up the same way)."""
    return int(_state["verbosity"])


def setup_worker(verbosity_: int) -> None:
    """In a batch worker process: the same quieting, cacpipe's warnings on stderr."""
    setup(verbosity_)


class _FileFilter(logging.Filter):
    """cacpipe's records from INFO, everyone else's from WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("cacpipe") or record.levelno >= logging.WARNING


@contextlib.contextmanager
def log_file(path: str | Path) -> Iterator[Path]:
    """Append the report lines, cacpipe's INFO messages and all warnings to ``path`` for the block.
    The log names patients and folders: it is owner-only, as every output with patient data (cacpipe.files)."""
    from .files import FILE_MODE, make_private_dir

    path = Path(path)
    make_private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE))
    os.chmod(path, FILE_MODE)  # the umask filters os.open's mode; an old log keeps its mode otherwise
    h = _tag(logging.FileHandler(path, encoding="utf-8"))
    h.setLevel(logging.INFO)
    h.addFilter(_FileFilter())
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root, rep = logging.getLogger(), report()
    root.addHandler(h)
    rep.addHandler(h)
    try:
        yield path
    finally:
        root.removeHandler(h)
        rep.removeHandler(h)
        h.close()
