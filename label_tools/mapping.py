"""The contour type -> MASS class mapping (a small JSON file the user can edit).

MASS (LUMC, 2021EXP) writes each contour with an integer *type* in its block header
(``slice frame type 1.0``). How the CT coronary variant numbers its classes is not publicly
documented, so cacpipe makes the mapping a data file. **The default is an assumption**:

    type 0 -> RCA, 1 -> LAD (mainstem + LAD), 2 -> LCX, 3 -> calcium (any artery)

Check it against a file exported from your MASS installation (``cacpipe-labels inspect``
lists the types found) and edit a copy (``cacpipe-labels default-mapping > mapping.json``).
Several types may map to one class (all are read as that class); the writer uses the lowest
type of each class, so files cacpipe writes read back to exactly the same classes.
Types listed in ``ignore_types`` are skipped on reading (e.g. reference points).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cacpipe.labels import MASS_CLASSES

from .errors import MappingError

SCHEMA = "cacpipe.con_mapping/1"

DEFAULT_MAPPING: dict = {
    "schema": SCHEMA,
    "comment": (
        "ASSUMED encoding of MASS 2021EXP coronary CT contour types (not publicly documented): "
        "check with `cacpipe-labels inspect FILE.con` and edit. Classes: RCA, LAD (mainstem + LAD), "
        "LCX, calcium (any artery). Several types may share a class; the writer uses the lowest."
    ),
    "types": {"0": "RCA", "1": "LAD", "2": "LCX", "3": "calcium"},
    "ignore_types": [],
}

_KEYS = {"schema", "comment", "types", "ignore_types"}


@dataclass(frozen=True)
class ContourMapping:
    """type -> MASS class (one of ``cacpipe.labels.MASS_CLASSES``), plus types to ignore."""

    types: dict[int, str]
    ignore_types: frozenset[int] = field(default_factory=frozenset)
    source: str = "default"

    def class_of(self, contour_type: int) -> str | None:
        """The class of a contour type; None for an ignored type; KeyError when unknown."""
        if contour_type in self.ignore_types:
            return None
        return self.types[contour_type]

    def write_type(self, cls: str) -> int:
        """The type the writer uses for ``cls`` (the lowest type mapped to it)."""
        return min(t for t, c in self.types.items() if c == cls)

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "types": {str(t): c for t, c in sorted(self.types.items())},
            "ignore_types": sorted(self.ignore_types),
        }


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for k, v in pairs:
        if k in seen:
            raise MappingError(f"duplicate key {k!r}")
        seen[k] = v
    return seen


def _int_type(key: object, where: str) -> int:
    try:
        t = int(str(key).strip())
    except ValueError:
        raise MappingError(f"{where}: contour type {key!r} is not an integer") from None
    if t < 0:
        raise MappingError(f"{where}: contour type {t} is negative")
    return t


def mapping_from_dict(d: dict, source: str = "<dict>") -> ContourMapping:
    """Validate a mapping dict (as in the JSON file) loudly and build a ContourMapping."""
    if not isinstance(d, dict):
        raise MappingError(f"{source}: the mapping must be a JSON object, got {type(d).__name__}")
    unknown = set(d) - _KEYS
    if unknown:
        raise MappingError(f"{source}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    if d.get("schema", SCHEMA) != SCHEMA:
        raise MappingError(f"{source}: schema {d.get('schema')!r} is not {SCHEMA!r}")
    raw = d.get("types")
    if not isinstance(raw, dict) or not raw:
        raise MappingError(f"{source}: 'types' must be a non-empty object of type -> class")
    types: dict[int, str] = {}
    for k, v in raw.items():
        t = _int_type(k, source)
        if t in types:
            raise MappingError(f"{source}: contour type {t} is listed twice (as {types[t]!r} and {v!r})")
        if v not in MASS_CLASSES:
            raise MappingError(f"{source}: type {t} maps to unknown class {v!r}; classes are {list(MASS_CLASSES)}")
        types[t] = v
    missing = [c for c in MASS_CLASSES if c not in types.values()]
    if missing:
        raise MappingError(f"{source}: no contour type maps to {missing}; every class {list(MASS_CLASSES)} needs one")
    ign_raw = d.get("ignore_types", [])
    if not isinstance(ign_raw, list):
        raise MappingError(f"{source}: 'ignore_types' must be a list of integers")
    ignore = [_int_type(x, source) for x in ign_raw]
    if len(set(ignore)) != len(ignore):
        raise MappingError(f"{source}: 'ignore_types' lists a type twice")
    both = set(ignore) & set(types)
    if both:
        raise MappingError(f"{source}: types {sorted(both)} are both mapped and ignored")
    return ContourMapping(types, frozenset(ignore), source)


def load_mapping(path: str | Path | None = None) -> ContourMapping:
    """Read and validate a mapping JSON file; ``None`` gives the documented default."""
    if path is None:
        return mapping_from_dict(DEFAULT_MAPPING, "default mapping")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {p}: {exc.strerror}") from exc
    try:
        d = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise MappingError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    except MappingError as exc:
        raise MappingError(f"{p}: {exc}") from exc
    return mapping_from_dict(d, str(p))


def default_mapping_text() -> str:
    """The default mapping as JSON text (what ``cacpipe-labels default-mapping`` prints)."""
    return json.dumps(DEFAULT_MAPPING, indent=2) + "\n"
