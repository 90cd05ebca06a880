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
from enum import Enum
from pathlib import Path

from .errors import InputDataError
from .flags import DEMO_MODEL, FALLBACK_HEART_LOCATOR, Flag
from .jsonfile import read_json, write_json
from .labels import ARTERIES

# --- what every output says about how a result was made (see Provenance) -----------------------
RESEARCH_USE = "RESEARCH USE ONLY - NOT FOR CLINICAL USE"
DEMO_MODEL_STATEMENT = "DEMO MODEL (phantom-trained)"
FALLBACK_HEART_STATEMENT = "heart: fallback locator"
SEVERITY_UNFITTED_STATEMENT = "severity model not fitted on local grades"

# --- the lesion model (found by cacpipe.quant.lesions.find_lesions) ------------------------------
@dataclass(frozen=True)
class Lesion:
    """One calcified lesion of one artery."""

    artery: str
    number: int  # 1-based within the artery, largest first
    voxels: int
    volume_mm3: float
    peak_hu: float
    mean_hu: float
    agatston: float  # this lesion's share of the artery's Agatston score
    area_mm2: float  # largest in-plane cross-section
    slices: tuple[int, ...]  # slice indices it touches (0-based, volume order)
    best_slice: int  # slice with the largest cross-section
    centre_zyx: tuple[float, float, float]  # centroid, voxel units
    centre_yx: tuple[float, float]  # centroid on best_slice, voxel units
    radius_px: float  # on best_slice, voxel units
    bbox_zyx: tuple[tuple[int, int], ...] = field(default=())  # per axis [lo, hi)
    found_by: str = "network"  # "network" (the calcium channel) or "density_rule" (cacpipe.segment.density)

    @property
    def name(self) -> str:
        return f"{self.artery} #{self.number}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["name"] = self.name
        for k in ("slices", "centre_zyx", "centre_yx"):
            d[k] = list(d[k])
        d["bbox_zyx"] = [list(b) for b in self.bbox_zyx]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Lesion:
        keys = cls.__dataclass_fields__
        v = {k: d[k] for k in keys if k in d}
        v["slices"] = tuple(int(s) for s in v.get("slices", ()))
        v["centre_zyx"] = tuple(float(s) for s in v["centre_zyx"])
        v["centre_yx"] = tuple(float(s) for s in v["centre_yx"])
        v["bbox_zyx"] = tuple(tuple(int(x) for x in b) for b in v.get("bbox_zyx", ()))
        return cls(**v)


RESULT_SCHEMA = "cacpipe.result/2"


class Status(str, Enum):
    """A study's outcome in result.json; a ``str`` (``Status.DONE == "done"``), so JSON and CSV are unchanged."""

    DONE = "done"
    NOT_ASSESSABLE = "not_assessable"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


STATUSES = tuple(s.value for s in Status)


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


@dataclass(frozen=True)
class Provenance:
    """How a result was made, as every output states it (console, pages, PNGs, DICOM, cohort.csv).

    Built from ``StudyResult.pipeline`` by :meth:`StudyResult.provenance`. cacpipe has no
    regulatory clearance, so :data:`RESEARCH_USE` heads every statement; the demo model, the
    fallback heart locator and a severity model not fitted on local grades are named when they
    were used.
    """

    cacpipe_version: str = ""
    model_name: str = ""  # DatasetXXX_name/<trainer>__<plans>__<configuration>
    model_id: str = ""  # content fingerprint of the model files (12 hex digits)
    model_card_id: str = ""  # id of the model's card (cacpipe.segment.card, 16 hex digits); "" without a card
    model_is_demo: bool = False
    heart_locator: str = ""  # "totalsegmentator" | "fallback" | "" (unknown)
    severity_fitted: bool | None = None  # None: no grades in the result

    @property
    def model_short(self) -> str:
        """The model's dataset name (``Dataset990_cacpipe_phantom_demo``) for short texts."""
        return self.model_name.split("/")[0] if self.model_name else "unknown model"

    @property
    def warnings(self) -> list[str]:
        """The statements beyond 'research use only' that apply (demo model, fallback heart, severity)."""
        out = []
        if self.model_is_demo:
            out.append(DEMO_MODEL_STATEMENT)
        if self.heart_locator == "fallback":
            out.append(FALLBACK_HEART_STATEMENT)
        if self.severity_fitted is False:
            out.append(SEVERITY_UNFITTED_STATEMENT)
        return out

    def made_by(self) -> str:
        """'model Dataset990_x (id 1a2b3c4d5e6f, card 0123456789abcdef), cacpipe 0.1.0'."""
        ids = ", ".join(x for x in (self.model_id and f"id {self.model_id}",
                                    self.model_card_id and f"card {self.model_card_id}") if x)
        model = self.model_short + (f" ({ids})" if ids else "")
        return f"model {model}, cacpipe {self.cacpipe_version or 'unknown'}"

    def statements(self) -> list[str]:
        """Every statement, most important first: research use, warnings, then who made it."""
        return [RESEARCH_USE, *self.warnings, self.made_by()]

    def line(self) -> str:
        """All statements on one line (console, cohort.csv, DICOM text items)."""
        return " | ".join(self.statements())

    def tag(self) -> str:
        """The shortest warning for tight spaces (DICOM series descriptions): 'DEMO NOT CLINICAL' or
        'RESEARCH ONLY'."""
        return "DEMO NOT CLINICAL" if self.model_is_demo else "RESEARCH ONLY"


@dataclass
class StudyResult:
    """One study's result: identity, provenance, flags, per-artery and total numbers, lesions, outputs."""

    study: StudyIdentity
    status: Status = Status.DONE  # a plain "done" / "not_assessable" / "failed" is accepted too
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
    # Reader corrections (cacpipe review apply): the numbers before correction and the audit trail.
    original: dict = field(default_factory=dict)
    corrections: dict = field(default_factory=dict)
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

    @property
    def severity_fitted(self) -> bool | None:
        """Whether the grades come from a severity model fitted on local radiologist grades
        (``cacpipe severity fit``); None when the result records no severity model."""
        sev = self.pipeline.get("severity_model")
        return None if not isinstance(sev, dict) else bool(sev.get("fitted_on_grades"))

    def provenance(self) -> Provenance:
        """What made this result, for every output to state (see :class:`Provenance`)."""
        model = self.model
        return Provenance(
            cacpipe_version=str(self.pipeline.get("version") or ""),
            model_name=str(model.get("name") or ""),
            model_id=str(model.get("id") or ""),
            model_card_id=str(model.get("card_id") or ""),
            model_is_demo=self.is_demo,
            heart_locator="fallback" if self.fallback_heart else self.heart_method,
            severity_fitted=self.severity_fitted,
        )

    def provenance_statement(self) -> str:
        """The one-line statement every output carries: 'RESEARCH USE ONLY - NOT FOR CLINICAL USE |
        DEMO MODEL (phantom-trained) | heart: fallback locator | ... | model X (id Y), cacpipe V'."""
        return self.provenance().line()

    # --- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "schema": self.schema,
            "status": Status(self.status).value,
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
            **({"original": self.original, "corrections": self.corrections} if self.corrections else {}),
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
            status=Status(status),
            reason=str(d.get("reason") or ""),
            pipeline=dict(d.get("pipeline") or {}),
            ct=dict(d.get("ct") or {}),
            flags=[Flag.from_dict(f) for f in d.get("flags") or []],
            arteries=arteries,
            total=TotalResult(**{k: v for k, v in (d.get("total") or {}).items() if k in tot_names}),
            lesions=[Lesion.from_dict(x) for x in d.get("lesions") or []],
            outputs=dict(d.get("outputs") or {}),
            ingest=dict(d.get("ingest") or {}),
            original=dict(d.get("original") or {}),
            corrections=dict(d.get("corrections") or {}),
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
PROVENANCE_FIELDS: tuple[str, ...] = ("model_name", "model_id", "model_card_id", "model_is_demo", "heart_locator",
                                      "severity_model_fitted", "cacpipe_version", "statement")
COHORT_COLUMNS: tuple[str, ...] = (
    *STUDY_FIELDS, "status",
    *(f"{a}_{f}" for a in ARTERIES for f in ARTERY_FIELDS),
    *(f"total_{f}" for f in TOTAL_FIELDS),
    "category", "cac_drs", "vessels_with_calcium", "agatston_valid", "flags",
    "corrected", "original_total_agatston", "original_category", "original_cac_drs",
    *PROVENANCE_FIELDS,
)


def cohort_row(result: StudyResult) -> dict:
    """Flat row of a finalised result; keys in :data:`COHORT_COLUMNS` order; None = not assessed."""
    study = result.study.to_dict()
    row: dict = {k: study.get(k) for k in STUDY_FIELDS}
    row["status"] = Status(result.status).value
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
    files = result.corrections.get("files") or []
    original = result.original.get("total") or {}
    row["corrected"] = "; ".join(f"{f.get('reader', '')} {f.get('time', '')}" for f in files) or None
    for f in ("agatston", "category", "cac_drs"):
        row[f"original_{'total_' if f == 'agatston' else ''}{f}"] = original.get(f) if files else None
    prov = result.provenance()
    row.update(model_name=prov.model_name, model_id=prov.model_id, model_card_id=prov.model_card_id or None,
               model_is_demo=prov.model_is_demo,
               heart_locator=prov.heart_locator, severity_model_fitted=prov.severity_fitted,
               cacpipe_version=prov.cacpipe_version, statement=prov.line())
    return row
