"""Exception types and exit codes. Every message says what went wrong and what the user can do about it.

The CLI prints ``str(error)`` on one line and exits with the error's ``exit_code``; batch runs
record it per study and go on. The exit codes of every cacpipe command are defined here, once
(docs/cli.md shows :data:`EXIT_CODES`; a test keeps it current).
"""

EXIT_OK = 0
EXIT_STUDY_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING_TO_SCORE = 3
EXIT_NO_SPACE = 4
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {  # "short: detail"
    EXIT_OK: "success: every study found was analysed (done, or not assessable with a reason) or was already "
             "up to date",
    EXIT_STUDY_FAILED: "some study failed: the run finished and wrote the other studies; each failure has a "
                       "one-line reason on the console and in manifest.json",
    EXIT_USAGE: "nothing was run: a usage, settings or input error, or a start check failed (device, model, "
                "output folder, lock held); the one-line message says what to change",
    EXIT_NOTHING_TO_SCORE: "nothing to score: the input holds no DICOM CT study, or every series was skipped "
                           "(reasons in manifest.json and `cacpipe scan --dry-run`)",
    EXIT_NO_SPACE: "out of space: the disk (or quota, or file-size limit) was full while writing; free space and "
                   "run the same command again (a scan resumes)",
    EXIT_INTERRUPTED: "interrupted: Ctrl-C, SIGTERM or SIGHUP; run the same command again to resume",
}


class CacpipeError(Exception):
    """Base class for every error cacpipe raises on purpose."""

    exit_code = EXIT_USAGE


class InputDataError(CacpipeError):
    """Input data (CT, DICOM, annotations, CSV) is missing, unreadable or inconsistent."""


class GeometryError(CacpipeError):
    """Images or label maps whose grids (shape, spacing, origin, direction) do not match."""


class ModelNotInstalledError(CacpipeError):
    """Model weights needed for a step are not installed; the message says how to install them."""


class ModelMismatchError(CacpipeError):
    """An installed or offered model does not match cacpipe's label scheme or expectations."""


class ConfigError(CacpipeError):
    """A setting, option or configuration file is invalid."""
