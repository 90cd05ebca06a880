"""The study record: who a study is (``StudyIdentity``) and what cacpipe found (``StudyResult``).

``StudyResult`` is the one definition of result.json (schema ``cacpipe.result/2``, described in
docs/ARCHITECTURE.md). The pipeline builds it, :func:`cacpipe.quant.validity.finalise` applies
every flag to it once, the batch runner adds what it knows about the input files, and the cohort
CSV, the review page, the overlays and the DICOM SR read it. Units: mm^3 for volumes (plus mL),
Agatston unitless, HU for densities. An artery that was not assessed has ``assessed=False`` and
``None`` numbers, never 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import InputDataError
from .flags import DEMO_MODEL, FALLBACK_HEART_LOCATOR, Flag
from .jsonfile import read_json, write_json
from .labels import ARTERIES
from .quant.lesions import Lesion

RESULT_SCHEMA = "cacpipe.result/2"
STATUSES = ("done", "not_assessable", "failed")


@dataclass
class StudyIdentity:
    """Identifiers of one study and of the series that was scored (from its DICOM headers, or
    from a file name for a NIfTI input)."""

    patient_id: str = ""
    patient_name: str = ""
    study_uid: str = ""
    study_date: str = ""
    accession: str = ""
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    manufacturer: str = ""
    kernel: str = ""
    slice_thickness_mm: float | None = None
    input_kind: str = "dicom"  # "dicom" | "image" (NIfTI, NRRD, MHA: no DICOM identifiers)

    @property
    def key(self) -> str:
        """How the runner names a study: ``PatientID/StudyInstanceUID``."""
        return f"{self.patient_id}/{self.study_uid}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> StudyIdentity:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})


@dataclass
class ArteryResult:
    """Calcium numbers of one artery."""

    assessed: bool = False
    calcium_volume_mm3: float | None = None
    calcium_volume_ml: float | None = None
    agatston: float | None = None
    lesions: int | None = None
    peak_hu: float | None = None
    mass_mg: float | None = None
    grade: str | None = None
    grade_probabilities: dict | None = None
    agatston_valid: bool = False

    @classmethod
    def not_assessed(cls) -> ArteryResult:
        """An artery that was not assessed: every number None, never 0."""
        return cls()


@dataclass
class TotalResult:
    """Numbers over all assessed arteries; category and CAC-DRS only when complete and valid."""

    calcium_volume_mm3: float | None = None
    calcium_volume_ml: float | None = None
    agatston: float | None = None
    lesions: int | None = None
    category: str | None = None
    cac_drs: str | None = None
    vessels_with_calcium: int | None = None
    mass_mg: float | None = None
    peak_hu: float | None = None
    assessed_arteries: list[str] = field(default_factory=list)
    complete: bool = False
    agatston_valid: bool = False
    agatston_note: str | None = None


@dataclass
class StudyResult:
    """One study's result: identity, provenance, flags, per-artery and total numbers, lesions, outputs."""

    study: StudyIdentity
    status: str = "done"
    reason: str = ""
    pipeline: dict = field(default_factory=dict)  # provenance: version, model, heart locator, settings, timings
    # The scored volume: shape_zyx, spacing_zyx, origin_xyz, direction, and per slice (volume order)
    # the PACS InstanceNumber and table position (mm) so that every slice named can be found in PACS.
    ct: dict = field(default_factory=dict)
    flags: list[Flag] = field(default_factory=list)
    arteries: dict[str, ArteryResult] = field(default_factory=lambda: {a: ArteryResult() for a in ARTERIES})
    total: TotalResult = field(default_factory=TotalResult)
    lesions: list[Lesion] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)  # name -> path relative to the study folder
    ingest: dict = field(default_factory=dict)  # input fingerprint, settings hash, files, skipped series
    schema: str = RESULT_SCHEMA

    def set_grid(self, volume, instance_numbers: list | None = None, positions_mm: list | None = None) -> None:
        """Record the scored volume's grid (a cacpipe.volume.Volume) and its slices' PACS references."""
        n = volume.shape[0]
        self.ct = {"shape_zyx": list(volume.shape), "spacing_zyx": list(volume.spacing_zyx),
                   "origin_xyz": list(volume.origin_xyz), "direction": list(volume.direction),
                   "instance_numbers": list(instance_numbers) if instance_numbers else [None] * n,
                   "slice_positions_mm": list(positions_mm) if positions_mm else [None] * n}

    def slice_reference(self, k: int) -> str:
        """How a reader finds volume slice ``k`` in PACS: 'image 42 (z -123.5 mm)'; 0-based k."""
        inst = (self.ct.get("instance_numbers") or [None] * (k + 1))[k] if self.ct else None
        pos = (self.ct.get("slice_positions_mm") or [None] * (k + 1))[k] if self.ct else None
        parts = [f"image {inst}" if inst is not None else f"slice {k + 1}"]
        if pos is not None:
            parts.append(f"(z {pos:.1f} mm)")
        return " ".join(parts)

    # --- provenance, as every output states it -----------------------------------------------
    @property
    def model(self) -> dict:
        return dict(self.pipeline.get("model") or {})

    @property
    def is_demo(self) -> bool:
        return bool(self.model.get("is_demo")) or any(f.code == DEMO_MODEL for f in self.flags)

    @property
    def heart_method(self) -> str:
        return str(self.pipeline.get("heart_method") or "")

    def has_flag(self, code: str, artery: str | None = None) -> bool:
        return any(f.code == code and (artery is None or f.artery == artery) for f in self.flags)

    @property
    def fallback_heart(self) -> bool:
        return self.heart_method == "fallback" or self.has_flag(FALLBACK_HEART_LOCATOR)

    # --- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "schema": self.schema,
            "status": self.status,
            "reason": self.reason,
            "study": self.study.to_dict(),
            "pipeline": self.pipeline,
            "ct": self.ct,
            "flags": [f.to_dict() for f in self.flags],
            "arteries": {a: asdict(r) for a, r in self.arteries.items()},
            "total": asdict(self.total),
            "lesions": [les.to_dict() for les in self.lesions],
            "outputs": self.outputs,
            "ingest": self.ingest,
        }

    @classmethod
    def from_json(cls, d: dict) -> StudyResult:
        if not isinstance(d, dict):
            raise InputDataError(f"a study result must be a JSON object, got {type(d).__name__}")
        schema = d.get("schema", RESULT_SCHEMA)
        if schema != RESULT_SCHEMA:
            raise InputDataError(f"result schema {schema!r} is not {RESULT_SCHEMA!r}: rescan the study with this "
                                 "cacpipe version")
        status = d.get("status", "done")
        if status not in STATUSES:
            raise InputDataError(f"result status {status!r} is not one of {STATUSES}")
        art_names = {f.name for f in fields(ArteryResult)}
        tot_names = {f.name for f in fields(TotalResult)}
        arteries = {a: ArteryResult(**{k: v for k, v in (d.get("arteries") or {}).get(a, {}).items()
                                       if k in art_names}) for a in ARTERIES}
        return cls(
            study=StudyIdentity.from_dict(d.get("study")),
            status=status,
            reason=str(d.get("reason") or ""),
            pipeline=dict(d.get("pipeline") or {}),
            ct=dict(d.get("ct") or {}),
            flags=[Flag.from_dict(f) for f in d.get("flags") or []],
            arteries=arteries,
            total=TotalResult(**{k: v for k, v in (d.get("total") or {}).items() if k in tot_names}),
            lesions=[Lesion.from_dict(x) for x in d.get("lesions") or []],
            outputs=dict(d.get("outputs") or {}),
            ingest=dict(d.get("ingest") or {}),
        )

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> StudyResult:
        return cls.from_json(read_json(path, "result file"))


# --- the cohort CSV row (columns `cacpipe evaluate` reads) -------------------------------------

ARTERY_FIELDS: tuple[str, ...] = (
    "assessed", "calcium_volume_mm3", "calcium_volume_ml", "agatston", "lesions", "peak_hu", "mass_mg", "grade",
)
TOTAL_FIELDS: tuple[str, ...] = ("calcium_volume_mm3", "calcium_volume_ml", "agatston", "lesions", "mass_mg")
STUDY_FIELDS: tuple[str, ...] = ("patient_id", "study_uid", "series_uid", "study_date", "manufacturer",
                                 "slice_thickness_mm")
COHORT_COLUMNS: tuple[str, ...] = (
    *STUDY_FIELDS, "status",
    *(f"{a}_{f}" for a in ARTERIES for f in ARTERY_FIELDS),
    *(f"total_{f}" for f in TOTAL_FIELDS),
    "category", "cac_drs", "vessels_with_calcium", "agatston_valid", "flags",
)


def cohort_row(result: StudyResult) -> dict:
    """Flat row of a finalised result; keys in :data:`COHORT_COLUMNS` order; None = not assessed."""
    study = result.study.to_dict()
    row: dict = {k: study.get(k) for k in STUDY_FIELDS}
    row["status"] = result.status
    for a in ARTERIES:
        art = asdict(result.arteries.get(a) or ArteryResult())
        for f in ARTERY_FIELDS:
            row[f"{a}_{f}"] = art.get(f)
    total = asdict(result.total)
    for f in TOTAL_FIELDS:
        row[f"total_{f}"] = total.get(f)
    for f in ("category", "cac_drs", "vessels_with_calcium", "agatston_valid"):
        row[f] = total.get(f)
    row["flags"] = ";".join(sorted({f.code for f in result.flags}))
    return row
