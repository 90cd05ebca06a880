"""Error types of label_tools. Every message names the file (and line) and what to fix."""

from __future__ import annotations

from cacpipe.errors import ConfigError, InputDataError


class ConFormatError(InputDataError):
    """A MASS ``.con`` file that cannot be read, or does not fit the CT it belongs to.

    ``path`` and ``line`` (1-based; None when the problem is not tied to one line) are kept as
    attributes so batch reports can list them; ``str()`` already contains both.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.reason = message
        where = str(path) if path is not None else "<.con>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {message}")


class MappingError(ConfigError):
    """A contour-type -> class mapping file that is invalid (unknown class, duplicate type, ...)."""
