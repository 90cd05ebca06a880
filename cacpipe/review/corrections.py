"""A reader's corrections of one study, and applying them with the project's own code.

A corrections file (JSON, schema ``cacpipe.corrections/1``, written by the review page; the format
is in docs/review.md) names the reader, the time, the study and a list of changes, each referring
to the study record *before* any correction (lesion names such as ``LCX #1``):

- ``{"op": "reassign", "lesion": "LCX #1", "to": "RCA"}``: the lesion's calcium belongs to RCA;
- ``{"op": "delete", "lesion": "LAD #2"}``: a false positive (its calcium label is removed);
- ``{"op": "add", "artery": "RCA", "seed_zyx": [z, y, x]}``: a missed lesion, grown from the
  clicked voxel (volume indices of the scored series) by :func:`grow_lesion`;
- ``{"op": "not_assessable", "artery": "LCX", "reason": "motion"}``: the artery cannot be scored.

:func:`corrected_labels` turns the original label map into a corrected one; ``cacpipe review
apply`` (cacpipe/commands/review.py) re-quantifies it with :func:`cacpipe.quant.quantify.quantify`
and :func:`cacpipe.quant.validity.finalise`, so the corrected numbers follow exactly the same
conventions as the original ones. The review page
runs the same growing rule in JavaScript for its live preview (static/study.js, ``growLesion``).
Arrays are (z, y, x).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputDataError
from ..flags import NOT_ASSESSABLE, READER_CORRECTED, Flag
from ..labels import ARTERIES, CALCIUM_ID, CALCIUM_IDS
from ..record import StudyResult
from ..units import CALCIUM_THRESHOLD_HU
from ..volume import Volume

SCHEMA = "cacpipe.corrections/1"
OPS = ("reassign", "delete", "add", "not_assessable")
GROW_BOX_MM = 10.0  # a missed lesion grows at most this far (mm, per axis) from the click
SNAP_PX = 2  # a click within this many pixels (same slice) of a calcium voxel snaps to the brightest one


@dataclass
class Corrections:
    """One reader's corrections of one study (a validated corrections file)."""

    reader: str
    time: str
    study_uid: str
    changes: list[dict]
    patient_id: str = ""
    series_uid: str = ""
    source: str = ""  # file it came from
    sha256: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "reader": self.reader, "time": self.time, "study_uid": self.study_uid,
                "patient_id": self.patient_id, "series_uid": self.series_uid, "changes": self.changes}

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.study_uid, self.reader, self.time)


def _fail(where: str, what: str) -> InputDataError:
    return InputDataError(f"{where}: {what}")


def parse_corrections(doc, where: str = "corrections") -> Corrections:
    """Validate one corrections document (a dict); raise InputDataError saying what is wrong."""
    if not isinstance(doc, dict):
        raise _fail(where, f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("schema") != SCHEMA:
        raise _fail(where, f"schema must be {SCHEMA!r}, got {doc.get('schema')!r}")
    for key in ("reader", "time", "study_uid"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise _fail(where, f"needs a non-empty {key!r}")
    changes = doc.get("changes")
    if not isinstance(changes, list):
        raise _fail(where, "'changes' must be a list")
    clean = []
    for i, ch in enumerate(changes):
        w = f"{where} change {i + 1}"
        if not isinstance(ch, dict) or ch.get("op") not in OPS:
            raise _fail(w, f"'op' must be one of {list(OPS)}, got {ch.get('op') if isinstance(ch, dict) else ch!r}")
        op = ch["op"]
        if op in ("reassign", "delete") and not isinstance(ch.get("lesion"), str):
            raise _fail(w, f"{op} needs the lesion name, e.g. 'LCX #1'")
        centre = ch.get("centre_zyx")
        if centre is not None and not (isinstance(centre, list) and len(centre) == 3
                                       and all(isinstance(v, (int, float)) for v in centre)):
            raise _fail(w, f"'centre_zyx' must be three numbers, got {centre!r}")
        if op == "reassign" and ch.get("to") not in ARTERIES:
            raise _fail(w, f"reassign needs 'to' in {list(ARTERIES)}, got {ch.get('to')!r}")
        if op in ("add", "not_assessable") and ch.get("artery") not in ARTERIES:
            raise _fail(w, f"{op} needs 'artery' in {list(ARTERIES)}, got {ch.get('artery')!r}")
        if op == "add":
            seed = ch.get("seed_zyx")
            if not (isinstance(seed, list) and len(seed) == 3 and all(isinstance(v, int) and v >= 0 for v in seed)):
                raise _fail(w, f"add needs 'seed_zyx': three voxel indices >= 0, got {seed!r}")
        clean.append(dict(ch))
    return Corrections(reader=doc["reader"].strip(), time=doc["time"].strip(), study_uid=doc["study_uid"].strip(),
                       changes=clean, patient_id=str(doc.get("patient_id") or ""),
                       series_uid=str(doc.get("series_uid") or ""))


def read_corrections(path: str | Path) -> list[Corrections]:
    """Corrections from one file: a corrections document, or a JSON list of them (the index
    page's "all corrections" download)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except FileNotFoundError as exc:
        raise InputDataError(f"corrections file not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"corrections file {path} is not readable JSON: {exc}") from exc
    docs = data if isinstance(data, list) else [data]
    out = []
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    for i, d in enumerate(docs):
        c = parse_corrections(d, f"{path}" + (f" [{i}]" if isinstance(data, list) else ""))
        c.source, c.sha256 = str(path), digest
        out.append(c)
    return out


# --- growing a missed lesion (the page's growLesion does exactly this) ---------------------------

def snap_seed(hu: np.ndarray, seed_zyx: Sequence[int]) -> tuple[int, int, int] | None:
    """The seed itself when it is calcium (>= 130 HU), else the brightest voxel >= 130 HU within
    SNAP_PX pixels on the same slice (first in row order on ties), else None."""
    z, y, x = (int(v) for v in seed_zyx)
    if hu[z, y, x] >= CALCIUM_THRESHOLD_HU:
        return z, y, x
    y0, x0 = max(0, y - SNAP_PX), max(0, x - SNAP_PX)
    win = hu[z, y0:y + SNAP_PX + 1, x0:x + SNAP_PX + 1]
    j = int(np.argmax(win))
    jy, jx = divmod(j, win.shape[1])
    if win[jy, jx] < CALCIUM_THRESHOLD_HU:
        return None
    return z, y0 + jy, x0 + jx


def grow_box(seed_zyx: Sequence[int], shape: Sequence[int], spacing_zyx: Sequence[float]) -> tuple[slice, ...]:
    """The box the lesion may grow in: GROW_BOX_MM around the seed on each axis (clipped to the scan)."""
    out = []
    for s, n, sp in zip(seed_zyx, shape, spacing_zyx, strict=True):
        r = int(np.ceil(GROW_BOX_MM / float(sp)))
        out.append(slice(max(0, int(s) - r), min(int(n), int(s) + r + 1)))
    return tuple(out)


def grow_lesion(hu: np.ndarray, labels: np.ndarray, seed_zyx: Sequence[int], spacing_zyx: Sequence[float],
                where: str = "add") -> np.ndarray:
    """Voxels (a boolean mask on the full grid) of a missed lesion clicked at ``seed_zyx``: the
    26-connected component of voxels >= 130 HU that are not yet any artery's calcium, inside
    :func:`grow_box`, containing the (snapped) seed."""
    shape = hu.shape
    if any(not 0 <= int(v) < n for v, n in zip(seed_zyx, shape, strict=True)):
        raise InputDataError(f"{where}: seed {list(seed_zyx)} is outside the scan {list(shape)}")
    seed = snap_seed(hu, seed_zyx)
    if seed is None:
        raise InputDataError(f"{where}: no calcium (>= {CALCIUM_THRESHOLD_HU:g} HU) within {SNAP_PX} pixels of "
                             f"the click at {list(seed_zyx)}")
    if labels[seed] in CALCIUM_IDS:
        raise InputDataError(f"{where}: the click at {list(seed_zyx)} is on a lesion that is already labelled; "
                             "reassign or delete that lesion instead")
    box = grow_box(seed, shape, spacing_zyx)
    cand = (hu[box] >= CALCIUM_THRESHOLD_HU) & ~np.isin(labels[box], CALCIUM_IDS)
    comp, _ = ndimage.label(cand, structure=np.ones((3, 3, 3), dtype=bool))
    local = tuple(int(s) - b.start for s, b in zip(seed, box, strict=True))
    out = np.zeros(shape, dtype=bool)
    out[box] = comp == comp[local]
    return out


# --- applying corrections -----------------------------------------------------------------------

class _LesionIndex:
    """The lesions of one version of the label map with their voxels (recomputed from that map).

    ``recorded``: the lesion names the reader could see (the original record's; for a map with
    corrections applied, every lesion found in it, as the rebuilt page lists them)."""

    def __init__(self, ct: Volume, labels: Volume, recorded: set[str] | None = None):
        from ..quant.lesions import find_lesions

        found, self.lmap = find_lesions(ct.array, labels.array, ct.spacing_zyx, with_map=True)
        self.id_of = {les.name: i + 1 for i, les in enumerate(found)}
        self.found = {les.name: les for les in found}
        self.recorded = set(self.found) if recorded is None else recorded

    def problem(self, name: str, where: str, centre=None) -> str | None:
        """Why lesion ``name`` (with the reader's ``centre``) is not a lesion of this version (None: it is)."""
        if name not in self.recorded or name not in self.id_of:
            return (f"{where}: lesion {name!r} is not in this study's record (known: {sorted(self.recorded) or 'none'}); "
                    "were the corrections made on another scan of this study?")
        if centre is not None and np.abs(np.subtract(centre, self.found[name].centre_zyx)).max() > 1.0:
            return (f"{where}: lesion {name!r} is elsewhere in this study's record (centre "
                    f"{[round(v, 1) for v in self.found[name].centre_zyx]}, the corrections say "
                    f"{[round(float(v), 1) for v in centre]}): they were made on another version of it")
        return None

    def region(self, name: str, where: str, centre=None) -> np.ndarray:
        why = self.problem(name, where, centre)
        if why:
            raise InputDataError(why)
        return self.lmap == self.id_of[name]

    def resolves(self, c: Corrections) -> bool:
        """Whether every lesion change of ``c`` names a lesion of this version (where it says it is)."""
        return all(self.problem(ch["lesion"], "", ch.get("centre_zyx")) is None
                   for ch in c.changes if ch["op"] in ("reassign", "delete"))


def _rim(lesion: np.ndarray, labels: np.ndarray, hu: np.ndarray, cid: int) -> np.ndarray:
    """Sub-threshold calcium-label voxels touching a lesion (partial volume): they go with it."""
    return ndimage.binary_dilation(lesion, structure=np.ones((3, 3, 3), dtype=bool)) & (labels == cid) & \
        (hu < CALCIUM_THRESHOLD_HU)


def merged_changes(corrections: list[Corrections]) -> tuple[dict[str, tuple[dict, Corrections]], list, list]:
    """(last lesion op per lesion name, adds, not-assessable marks), each with its corrections,
    oldest file first (a later reader's decision on a lesion replaces an earlier one)."""
    lesion_ops: dict[str, tuple[dict, Corrections]] = {}
    adds, marks = [], []
    for c in sorted(corrections, key=lambda c: (c.time, c.reader)):
        for ch in c.changes:
            if ch["op"] in ("reassign", "delete"):
                lesion_ops[ch["lesion"]] = (ch, c)
            elif ch["op"] == "add":
                adds.append((ch, c))
            else:
                marks.append((ch, c))
    return lesion_ops, adds, marks


def corrected_labels(ct: Volume, labels: Volume, original: StudyResult, corrections: list[Corrections]
                     ) -> tuple[np.ndarray, list[dict]]:
    """The corrected six-class map and the audit entries (one per change, with what it did).

    Corrections are applied in layers: first every document whose lesion names resolve against
    the original record (made on the original page), then those that resolve against the map with
    the first layer applied (made on the page ``review apply`` rebuilt), and so on; a document that
    resolves against no version is refused with the reason it does not fit the original record."""
    lab = labels.array.astype(np.uint8).copy()
    not_assessed = [a for a in ARTERIES if not original.arteries[a].assessed]
    pending = sorted(corrections, key=lambda c: (c.time, c.reader))
    index = _LesionIndex(ct, labels, {les.name for les in original.lesions})
    first = index
    audit: list[dict] = []
    while pending:
        layer = [c for c in pending if index.resolves(c)]
        if not layer:
            _raise_first(first, pending)
        audit += _apply_layer(ct, lab, index, layer, not_assessed)
        pending = [c for c in pending if c not in layer]
        if pending:
            index = _LesionIndex(ct, labels.with_array(lab))
    return lab, audit


def _raise_first(index: _LesionIndex, pending: list[Corrections]) -> None:
    for c in pending:
        for ch in c.changes:
            if ch["op"] in ("reassign", "delete"):
                index.region(ch["lesion"], f"corrections of {c.reader} ({c.time})", ch.get("centre_zyx"))
    raise InputDataError("corrections fit no version of this study's record")  # not reached


def _apply_layer(ct: Volume, lab: np.ndarray, index: _LesionIndex, corrections: list[Corrections],
                 not_assessed: list[str]) -> list[dict]:
    """Apply ``corrections`` (all made on the version ``index`` describes) to ``lab`` in place."""
    hu = ct.array
    before = lab.copy()
    lesion_ops, adds, marks = merged_changes(corrections)
    audit = []
    for name, (ch, c) in lesion_ops.items():
        where = f"corrections of {c.reader} ({c.time})"
        region = index.region(name, where, ch.get("centre_zyx"))
        les = index.found[name]
        region |= _rim(region, before, hu, CALCIUM_ID[les.artery])
        if ch["op"] == "delete":
            lab[region] = 0
            did = f"deleted {name} ({les.volume_mm3:.1f} mm3, Agatston {les.agatston:.1f})"
        else:
            lab[region] = CALCIUM_ID[ch["to"]]
            did = f"reassigned {name} to {ch['to']} (Agatston {les.agatston:.1f})"
        audit.append({"reader": c.reader, "time": c.time, "change": ch, "effect": did})
    for ch, c in adds:
        where = f"corrections of {c.reader} ({c.time}): add {ch['artery']}"
        if ch["artery"] in not_assessed:
            raise InputDataError(f"{where}: {ch['artery']} was not assessed in this study; a lesion cannot be "
                                 "added to it")
        region = grow_lesion(hu, lab, ch["seed_zyx"], ct.spacing_zyx, where)
        lab[region] = CALCIUM_ID[ch["artery"]]
        audit.append({"reader": c.reader, "time": c.time, "change": ch,
                      "effect": f"added a {ch['artery']} lesion of {int(region.sum())} voxels"})
    for ch, c in marks:
        audit.append({"reader": c.reader, "time": c.time, "change": ch,
                      "effect": f"{ch['artery']} marked not assessable"})
    return audit


def reader_flags(original: StudyResult, corrections: list[Corrections], n_changes: int) -> list[Flag]:
    """The flags a corrected record gets: one per artery marked not assessable, and one saying who
    corrected it (with the original total)."""
    out = []
    _, _, marks = merged_changes(corrections)
    for ch, c in marks:
        reason = str(ch.get("reason") or "").strip()
        out.append(Flag(NOT_ASSESSABLE, f"{ch['artery']} marked not assessable by reader {c.reader}"
                        + (f": {reason}" if reason else ""), "invalid", ch["artery"]))
    readers = ", ".join(sorted({c.reader for c in corrections}))
    total = original.total.agatston
    out.append(Flag(READER_CORRECTED, f"corrected by {readers}: {n_changes} change(s); original total Agatston "
                    + ("n/a" if total is None else f"{total:.1f}") + " (see 'original' in result.json)", "info"))
    return out


def check_study(original: StudyResult, corrections: list[Corrections]) -> None:
    """Refuse corrections made for another study, or none at all."""
    if not corrections:
        raise InputDataError("no corrections to apply")
    uids = {c.study_uid for c in corrections}
    if uids != {original.study.study_uid}:
        raise InputDataError(f"corrections for study {sorted(uids)} cannot be applied to study "
                             f"{original.study.study_uid!r}")


def original_record(result_json: dict) -> StudyResult:
    """The record before any correction: result.json itself, or its ``original`` part once corrected."""
    orig = result_json.get("original")
    if not orig:
        return StudyResult.from_json(result_json)
    base = {k: v for k, v in result_json.items() if k not in ("original", "corrections")}
    base.update({k: orig[k] for k in ORIGINAL_KEYS if k in orig})
    return StudyResult.from_json(base)


ORIGINAL_KEYS = ("status", "reason", "flags", "arteries", "total", "lesions")


def corrected_json(original: StudyResult, corrected: StudyResult, corrections: list[Corrections], audit: list,
                   labels_file: str) -> dict:
    """result.json of a corrected study: the corrected numbers, ``original`` (the numbers before
    correction) and ``corrections`` (every corrections file applied, and what each change did)."""
    out = corrected.to_json()
    orig = original.to_json()
    out["original"] = {k: orig[k] for k in ORIGINAL_KEYS}
    out["corrections"] = {
        "labels": labels_file,
        "files": [{**c.to_json(), "source": c.source, "sha256": c.sha256} for c in sorted(corrections, key=lambda c: c.time)],
        "audit": audit,
    }
    out["outputs"] = {**corrected.outputs, "labels_corrected": labels_file}
    return out


def applied_corrections(result_json: dict) -> list[Corrections]:
    """Corrections already applied to a result.json (so that applying again adds to them)."""
    files = ((result_json.get("corrections") or {}).get("files")) or []
    out = []
    for i, d in enumerate(files):
        c = parse_corrections(d, f"result.json corrections [{i}]")
        c.source, c.sha256 = str(d.get("source") or ""), str(d.get("sha256") or "")
        out.append(c)
    return out


def merge_corrections(old: list[Corrections], new: list[Corrections]) -> list[Corrections]:
    """``old`` plus ``new``; one document per (study, reader, time): the same file applied twice counts once."""
    seen: dict[tuple, Corrections] = {}
    for c in [*old, *new]:
        seen[c.key] = c
    return sorted(seen.values(), key=lambda c: (c.time, c.reader))
