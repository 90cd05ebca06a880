"""The one configuration tree: every setting that changes what a scan reads, computes or writes.

``Settings`` has one section per stage (``selection``, ``assembly``, ``heart``, ``segment``,
``quant``, ``review``) plus the ``device``. Each default is stated once, here; choices are enums
or checked lists; parsing is strict (an unknown key is an error that lists the valid ones).
``cacpipe scan --settings FILE.json`` takes the same nested keys (``{"heart": {"method":
"fallback"}}``); ``cacpipe settings`` prints them, and docs/settings.md is generated from
:func:`settings_markdown` (a test keeps it current). Every result.json records ``to_dict()``.

Units: mm, mm^3, HU; tuples of three are (z, y, x) as everywhere in cacpipe (units.py).
Stage packages import their section from here; this module imports no stage.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError


def setting(default: Any, help: str) -> Any:  # noqa: A002 - "help" reads best in the definitions below
    """A dataclass field with its documentation (shown by ``cacpipe settings`` and in docs)."""
    return field(default=default, metadata={"help": help})


class HeartMethod(str, enum.Enum):
    """Which heart locator stage 1 uses."""

    AUTO = "auto"  # TotalSegmentator when its weights are installed, else the fallback (flagged)
    TOTALSEGMENTATOR = "totalsegmentator"
    FALLBACK = "fallback"


DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+(,\d+)*)$")


def parse_device(text: str) -> str:
    """Check a device string: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``cuda:N,M,...``."""
    t = str(text).strip().lower()
    if not DEVICE_RE.match(t):
        raise ConfigError(f"device {text!r} is not one of auto, cpu, cuda, cuda:N or cuda:N,M,... (e.g. cuda:0,1)")
    return t


# Fields a user may allow on images and pages (review.fields); each maps a result study key or a derived value.
DISPLAY_FIELDS: dict[str, str] = {
    "anon_id": "Anon ID",
    "study_date": "Study date",
    "patient_id": "Patient ID",
    "patient_name": "Patient name",
    "accession": "Accession",
    "study_uid": "Study UID",
    "series_description": "Series",
}

# Calcium window: L 200 / W 800 shows -200..600 HU. Calcium at the 130 HU threshold sits at 41 %
# grey, dense calcium (>= 600 HU) is white, and fat (-100) stays darker than soft tissue (40), so
# the arteries in the epicardial fat remain visible. A mediastinal window (L 40 / W 400) saturates
# every plaque to white and hides its density, which drives the Agatston weight.
CALCIUM_WINDOW: tuple[float, float] = (200.0, 800.0)  # (level, width) in HU


class Section:
    """Behaviour shared by every settings section: strict parsing, JSON, documentation."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError when a value is out of range (sections override)."""

    # --- parsing ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict | None, where: str = "") -> Section:
        """Build from a JSON-like dict; unknown keys and wrong types raise ConfigError."""
        where = where or cls.__name__
        if d is not None and not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(d).__name__}")
        d = dict(d or {})
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {unknown}; valid keys: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in d.items()}
        return cls(**values)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _plain(getattr(self, f.name))
        return out

    def replace(self, **changes) -> Section:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def describe(cls, prefix: str = "") -> list[tuple[str, str, str, str]]:
        """(key, type, default, help) for every leaf setting, sections flattened with dots."""
        rows = []
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            t = hints[f.name]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if isinstance(t, type) and issubclass(t, Section):
                rows += t.describe(f"{prefix}{f.name}.")
                continue
            rows.append((f"{prefix}{f.name}", _type_name(t), _json_text(_plain(default)), f.metadata.get("help", "")))
        return rows


def _plain(v):
    if isinstance(v, Section):
        return v.to_dict()
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _json_text(v) -> str:
    import json

    return json.dumps(v)


def _type_name(t) -> str:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(t))
    if origin is tuple:
        args = typing.get_args(t)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return " | ".join(repr(m.value) for m in t)
    if t is type(None):
        return "null"
    return getattr(t, "__name__", str(t))


def _coerce(v, t, where: str):
    """``v`` (from JSON) as type ``t``, or ConfigError naming ``where``."""
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(t)
        if v is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(v, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {v!r} is not {_type_name(t)}")
    if isinstance(t, type) and issubclass(t, Section):
        if not isinstance(v, dict):
            raise ConfigError(f"{where}: expected a mapping, got {v!r}")
        return t.from_dict(v, where)
    if isinstance(t, type) and issubclass(t, enum.Enum):
        try:
            return t(v)
        except ValueError:
            raise ConfigError(f"{where}: {v!r} is not one of {[m.value for m in t]}") from None
    if origin is tuple:
        args = typing.get_args(t)
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {v!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(x, args[0], f"{where}[{i}]") for i, x in enumerate(v))
        if len(v) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(v)} ({v!r})")
        return tuple(_coerce(x, a, f"{where}[{i}]") for i, (x, a) in enumerate(zip(v, args, strict=True)))
    if t is bool:
        if isinstance(v, bool):
            return v
        raise ConfigError(f"{where}: expected true or false, got {v!r}")
    if t is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        raise ConfigError(f"{where}: expected a whole number, got {v!r}")
    if t is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    if t is str:
        if isinstance(v, str):
            return v
        raise ConfigError(f"{where}: expected text, got {v!r}")
    return v


def _positive(where: str, *values: float) -> None:
    if any(not (v > 0) for v in values):
        raise ConfigError(f"{where} must be > 0, got {values if len(values) > 1 else values[0]}")


# --- sections ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiscoverySettings(Section):
    """Which files of an export are read (cacpipe.ingest.discover; docs/scan.md). It changes the
    inputs, which each study's input fingerprint tracks, so it is not part of the settings hash."""

    follow_symlinks: bool = setting(False, "read symbolic links to files outside the export (by default they are "
                                           "reported in the manifest's problems and not followed)")


@dataclass(frozen=True)
class SelectionSettings(Section):
    """Which series of a study is scored (cacpipe.ingest.select; rules in docs/scan.md)."""

    min_slices: int = setting(100, "series with fewer images are skipped (the source study excluded < 100)")
    min_spacing_mm: float = setting(0.5, "smallest slice spacing (mm, from slice positions) accepted")
    max_spacing_mm: float = setting(3.0, "largest slice spacing (mm) accepted")
    max_obliquity_deg: float = setting(30.0, "largest angle (deg) of the slice normal from the head-foot axis")
    allow_contrast: bool = setting(False, "also score series with a contrast agent tag (flagged; Agatston invalid)")
    preferred_spacing_mm: float = setting(3.0, "among qualifying series, prefer the spacing closest to this (mm)")
    preferred_kernel: str = setting("", "regular expression; series whose ConvolutionKernel matches rank first "
                                        "(empty: soft-tissue kernels over sharp/lung kernels)")

    def validate(self) -> None:
        if self.min_slices < 1:
            raise ConfigError(f"selection.min_slices must be >= 1, got {self.min_slices}")
        _positive("selection.min_spacing_mm / max_spacing_mm", self.min_spacing_mm, self.max_spacing_mm)
        if self.min_spacing_mm > self.max_spacing_mm:
            raise ConfigError(f"selection.min_spacing_mm {self.min_spacing_mm} > max_spacing_mm {self.max_spacing_mm}")
        if self.preferred_kernel:
            try:
                re.compile(self.preferred_kernel)
            except re.error as exc:
                raise ConfigError(f"selection.preferred_kernel {self.preferred_kernel!r} is not a regular "
                                  f"expression: {exc}") from exc


@dataclass(frozen=True)
class AssemblySettings(Section):
    """Tolerances of volume assembly (cacpipe.ingest.assemble)."""

    max_missing_slices: int = setting(0, "missing slices tolerated per series, filled by linear interpolation "
                                         "and flagged (0: a gap refuses the series)")
    uneven_tolerance: float = setting(0.05, "relative deviation of a slice gap from the median gap before the "
                                            "stack is resampled to a regular grid (flagged)")
    tilt_tolerance_deg: float = setting(0.5, "gantry tilt (deg) below which a stack counts as untilted")
    max_gantry_tilt_deg: float = setting(30.0, "larger gantry tilt (deg) refuses the series")
    position_tolerance_mm: float = setting(0.01, "slice positions closer than this (mm) are duplicates")

    def validate(self) -> None:
        if self.max_missing_slices < 0:
            raise ConfigError(f"assembly.max_missing_slices must be >= 0, got {self.max_missing_slices}")
        _positive("assembly tolerances", self.uneven_tolerance, self.tilt_tolerance_deg, self.max_gantry_tilt_deg,
                  self.position_tolerance_mm)


@dataclass(frozen=True)
class HeartSettings(Section):
    """Stage 1: heart locator and crop (cacpipe.heart; docs/stage1.md)."""

    method: HeartMethod = setting(HeartMethod.AUTO, "auto: TotalSegmentator when its weights are installed, "
                                                    "else the classical fallback locator (flagged)")
    fast: bool = setting(False, "TotalSegmentator's fast mode (3 mm model, Dataset297) instead of 1.5 mm (Dataset293)")
    padding_voxels_zyx: tuple[int, int, int] = setting(
        (0, 10, 10), "crop padding in voxels of the model grid, (z, y, x): the paper's '(10, 10, 0)' read as (x, y, z)")
    margin_mm: float = setting(5.0, "margin (mm) added to the heart box before the padding: the coronaries run in "
                                    "the fat outside the heart mask (the PDA below its inferior wall)")
    fallback_margin_mm: float = setting(10.0, "margin (mm) used instead when the coarse fallback locator found the heart")
    totalseg_home: str | None = setting(None, "TotalSegmentator home (weights under HOME/nnunet/results); null: "
                                              "$TOTALSEG_WEIGHTS_PATH, $TOTALSEG_HOME_DIR or ~/.totalsegmentator")

    def validate(self) -> None:
        if any(p < 0 for p in self.padding_voxels_zyx):
            raise ConfigError(f"heart.padding_voxels_zyx must be >= 0, got {self.padding_voxels_zyx}")
        if self.margin_mm < 0 or self.fallback_margin_mm < 0:
            raise ConfigError(f"heart margins must be >= 0 mm, got {self.margin_mm} and {self.fallback_margin_mm}")


@dataclass(frozen=True)
class SegmentSettings(Section):
    """Stage 2: the nnU-Net ensemble (cacpipe.segment; docs/stage2.md)."""

    model: str | None = setting(None, "installed model (see `cacpipe models list`); null: the only installed one")
    model_dir: str | None = setting(None, "model folder; null: $CACPIPE_MODEL_DIR or ~/.cacpipe/models")
    allow_demo_model: bool = setting(False, "with no model installed, use the phantom-trained demo model "
                                            "(NOT FOR CLINICAL USE; every output says so); false: a scan "
                                            "without an installed model stops at start")
    folds: tuple[int, ...] | None = setting(None, "subset of the ensemble's folds; null: all")
    mirroring: bool | None = setting(None, "test-time mirroring (never left-right); null: off on CPU, on on GPU")
    tile_step_size: float = setting(0.5, "sliding-window step as a fraction of the patch (smaller: more overlap, slower)")
    agreement: bool = setting(False, "also save the per-voxel fold agreement (heat map in the overlays)")
    bf16: bool | None = setting(None, "bfloat16 autocast on CPU; null: on when the CPU has native bfloat16 "
                                      "(AVX512-BF16/AMX): 1.6-2x faster, same Agatston on held-out phantoms "
                                      "(docs/performance.md); false: float32")
    threads: int | None = setting(None, "torch CPU threads; null: torch's default")
    tile_batch: int | None = setting(None, "sliding-window tiles per forward pass (same result up to rounding; "
                                           "more: more memory); null: on CPU as many small tiles as fit in 2^20 "
                                           "voxels, at most 8 (1 for the paper's patch), on CUDA 1")
    channels_last: bool = setting(False, "channels-last 3D memory layout for network and tiles (same result up "
                                         "to rounding; no gain measured on CPU: docs/performance.md)")
    postprocess: bool = setting(True, "complete each calcium lesion to its >= 130 HU extent near the arteries, "
                                      "give it to the artery tree it lies on, flag implausible anatomy "
                                      "(docs/stage2.md); false: the network's map as is")
    density_rule: bool = setting(True, "with postprocess: >= 130 HU spots on or next to the predicted coronary "
                                       "labels that the calcium channel missed count as calcium when the "
                                       "density rule's judge accepts them (cacpipe/data/density_rule.json; "
                                       "docs/stage2.md); false: only the network's calcium")
    save_calcium_probability: bool = setting(False, "also write calcium_prob.nii.gz: the network's calcium "
                                                    "probability on the CT grid (refitting the density rule: "
                                                    "python -m devtools.density_fit)")

    def validate(self) -> None:
        if not 0 < self.tile_step_size <= 1:
            raise ConfigError(f"segment.tile_step_size must be in (0, 1], got {self.tile_step_size}")
        if self.folds is not None and (not self.folds or any(f < 0 for f in self.folds)):
            raise ConfigError(f"segment.folds must be fold numbers >= 0, got {list(self.folds)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"segment.threads must be >= 1, got {self.threads}")
        if self.tile_batch is not None and self.tile_batch < 1:
            raise ConfigError(f"segment.tile_batch must be >= 1, got {self.tile_batch}")


@dataclass(frozen=True)
class QuantSettings(Section):
    """Quantification (cacpipe.quant; docs/quantification.md)."""

    calibration_factor: float | None = setting(None, "mg per (mL x HU) from your scanner's calibration; enables "
                                                     "the mass score")
    severity_model: str | None = setting(None, "severity model JSON from `cacpipe severity fit`; null: the "
                                               "packaged model (not fitted on radiologist grades)")

    def validate(self) -> None:
        if self.calibration_factor is not None:
            _positive("quant.calibration_factor", self.calibration_factor)


@dataclass(frozen=True)
class ReviewSettings(Section):
    """Review outputs: overlays, review page, DICOM SEG/SR/SC, C-STORE (cacpipe.review; docs/review.md)."""

    enabled: bool = setting(True, "write overlays and the review page")
    ct_nifti: bool = setting(True, "write ct.nii.gz (the scored CT as read, on the grid of labels.nii.gz, for "
                                   "viewers; stored, not deflated: 2 bytes a voxel, about 160 MB for 512x512x300 "
                                   "slices) even without the review page")
    dicom: bool = setting(True, "write DICOM SEG, SR and secondary captures (needs DICOM input)")
    send: str | None = setting(None, "C-STORE each study's SEG/SR/SC to AE@HOST:PORT")
    fields: tuple[str, ...] = setting(("anon_id", "study_date"), "study fields shown in images and pages: "
                                      + ", ".join(DISPLAY_FIELDS))
    window: tuple[float, float] = setting(CALCIUM_WINDOW, "(level, width) HU of the slice images (calcium window)")
    max_slices: int = setting(40, "at most this many lesion-slice images (largest lesions first)")
    html_max_slices: int = setting(256, "review page: at most this many slices at full resolution (the heart region; "
                                   "the whole scan is there at reduced resolution)")
    zoom_to_heart: bool = setting(True, "crop images to the labelled region plus margin_mm")
    margin_mm: float = setting(35.0, "margin (mm) around the labelled region in zoomed images and the page's "
                               "full-resolution heart region")
    display_px: int = setting(512, "target width (pixels) of a zoomed image")
    series_number_base: int = setting(9100, "SEG, SR and SC get series numbers base+1, base+2, base+3")
    salt: str | None = setting(None, "secret keying the anonymised id (give every site of a multi-site study "
                                     "the same one); null: this installation's random secret in "
                                     "$CACPIPE_CONFIG_DIR/anonymisation_salt. Never written to results")
    anonymous_names: bool = setting(False, "name study folders by pseudonyms (anon-<id>/study-<id>, keyed by the "
                                           "secret) instead of PatientID/StudyUID, and put the anonymised id instead "
                                           "of the PatientID into the review pages' data, their ratings and "
                                           "corrections downloads, and the index (links and hover text)")

    def validate(self) -> None:
        unknown = [f for f in self.fields if f not in DISPLAY_FIELDS]
        if unknown:
            raise ConfigError(f"review.fields: unknown field(s) {unknown}; choose from {sorted(DISPLAY_FIELDS)}")
        if self.window[1] <= 0:
            raise ConfigError(f"review.window width must be > 0 HU, got {self.window[1]}")
        if self.max_slices < 1 or self.html_max_slices < 1:
            raise ConfigError("review.max_slices and review.html_max_slices must be >= 1")


@dataclass(frozen=True)
class Settings(Section):
    """Everything that changes a study's result; recorded in every result.json."""

    device: str = setting("auto", "where the networks run: auto (cuda when available), cpu, cuda, cuda:N")
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    assembly: AssemblySettings = field(default_factory=AssemblySettings)
    heart: HeartSettings = field(default_factory=HeartSettings)
    segment: SegmentSettings = field(default_factory=SegmentSettings)
    quant: QuantSettings = field(default_factory=QuantSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)

    def validate(self) -> None:
        object.__setattr__(self, "device", parse_device(self.device))

    def to_record(self) -> dict:
        """``to_dict`` as written into result.json and manifest.json: secrets replaced by their public
        name (``review.salt`` -> ``"secret 1a2b3c4d"``, see :func:`secret_id`)."""
        d = self.to_dict()
        if self.review.salt:
            d["review"]["salt"] = f"secret {secret_id(self.review.salt)}"
        return d

    def merged(self, changes: dict) -> Settings:
        """These settings with ``changes`` (a nested dict, same keys as ``to_dict``) applied, strictly."""
        return Settings.from_dict(_deep_merge(self.to_dict(), changes), "settings")  # type: ignore[return-value]


def secret_id(secret: str) -> str:
    """A short public name of a secret (8 hex digits of a SHA-256), so that records can say which one
    was used, and sites can check that they share it, without writing it down."""
    import hashlib

    return hashlib.sha256(b"cacpipe-secret-id\0" + secret.encode()).hexdigest()[:8]


def _deep_merge(base: dict, changes: dict, where: str = "settings") -> dict:
    out = dict(base)
    if not isinstance(changes, dict):
        raise ConfigError(f"{where}: expected a mapping, got {changes!r}")
    for k, v in changes.items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k] = _deep_merge(out[k], v, f"{where}.{k}")
        else:
            out[k] = v
    return out


def settings_markdown() -> str:
    """docs/settings.md: every key of the tree with its type, default and meaning."""
    lines = [
        "# Settings",
        "",
        "<!-- generated by `python -m cacpipe.config > docs/settings.md`; do not edit by hand -->",
        "",
        "Every setting that changes a result, with its default. `cacpipe scan --settings FILE.json` takes",
        "them as nested JSON (`{\"heart\": {\"method\": \"fallback\"}, \"segment\": {\"folds\": [0, 1]}}`);",
        "command-line options override the file. Unknown keys are refused with the list of valid ones.",
        "Each result.json records the full tree under `pipeline.settings`. Tuples of three are (z, y, x).",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key, t, default, help_ in Settings.describe():
        lines.append(f"| `{key}` | {t.replace('|', '/')} | `{default}` | {help_.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
