"""Exception types. Every message says what went wrong and what the user can do about it.

The CLI prints ``str(error)`` on one line and exits non-zero; batch runs record it per study.
"""


class CacpipeError(Exception):
    """Base class for every error cacpipe raises on purpose."""

    exit_code = 2


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
