"""Reading and writing the JSON files cacpipe and its users exchange (records, settings, models)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CacpipeError, InputDataError


def read_json(path: str | Path, what: str, error: type[CacpipeError] = InputDataError, hint: str = ""):
    """The content of a JSON file; a missing or invalid file raises ``error`` naming ``what``."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} not found: {path}" + (f" ({hint})" if hint else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON: {exc}") from exc


def write_json(path: str | Path, obj, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8); creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent, default=str), encoding="utf-8")
    return path


def jsonable(o):
    """``json.dumps(default=...)`` for numpy scalars and arrays (anything else as its text)."""
    import numpy as np

    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
