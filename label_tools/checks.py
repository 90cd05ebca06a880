"""Checks of one training case before anything is trained on it (``make train DRY_RUN=1``).

A case **fails** when training on it would teach the model something wrong or cannot work:

- the CT cannot be read, or its values do not look like HU (no air below -500 HU);
- the contours cannot be read: unknown contour type, slice count or image size not matching
  the CT, slice index out of range, points outside the image (``convert_case`` raises);
- a label map is not on the CT grid or holds ids outside the six-class scheme;
- no artery is labelled at all;
- the calcium labels mostly sit on voxels below 130 HU (wrong slice order, wrong image, or the
  calcium contour type mapped to the wrong class): calcium is drawn on bright voxels.

Warnings do not fail a case: calcium components dropped or split between arteries by the
calcium rule, an artery without any label, a slice spacing outside 0.5-3 mm.

Facts kept per case (for the dry-run summary and the model card): scanner, slice thickness and
spacing, contrast (DICOM contrast tag, or the labelled arteries' median HU above the blood-pool
contrast threshold of stage 1), labelled voxels per class, and the labelled arteries' bounding
box in mm (the disk estimate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from cacpipe.errors import CacpipeError
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from cacpipe.units import CALCIUM_THRESHOLD_HU

# A chest CT holds air (lungs, outside the body) at about -1000 HU; without any voxel below this
# the image is not in HU (a missing rescale slope/intercept, or a mask exported as the image).
AIR_CHECK_HU = -500.0
# At least this fraction of calcium-labelled voxels must be >= 130 HU (the same test as the
# conversion report's slice-order check, here a failure rather than a warning).
MIN_CALCIUM_FRACTION = 0.5


@dataclass
class CaseCheck:
    """The outcome of checking one case (one row of ``preflight.csv``)."""

    case: str
    patient_id: str
    source: str = ""
    status: str = "ok"  # "ok" | "failed"
    problems: list[str] = field(default_factory=list)  # why it failed
    warnings: list[str] = field(default_factory=list)
    input_kind: str = ""  # "dicom" | "image" | "phantom"
    scanner: str = ""  # manufacturer + model name, "" when unknown (image files)
    kernel: str = ""
    slice_thickness_mm: float | None = None  # the DICOM tag; None for image files
    spacing_zyx: list[float] | None = None
    shape_zyx: list[int] | None = None
    contrast: bool | None = None
    contrast_reason: str = ""
    calcium_fraction_ge_130: float | None = None
    voxels_by_class: dict[str, int] = field(default_factory=dict)
    labelled_extent_mm_zyx: list[float] | None = None  # bounding box of every labelled voxel

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fail(self, why: str) -> None:
        self.status = "failed"
        self.problems.append(why)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CaseCheck:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _scanner(series) -> tuple[str, str]:
    ds = series.sources[0] if getattr(series, "sources", None) else None
    if ds is None:
        return series.identity.manufacturer or "", series.identity.kernel or ""
    name = " ".join(str(ds.get(k, "") or "").strip() for k in ("Manufacturer", "ManufacturerModelName")).strip()
    return name, str(ds.get("ConvolutionKernel", "") or series.identity.kernel or "")


def contrast_of(series, hu: np.ndarray, labels: np.ndarray) -> tuple[bool | None, str]:
    """(contrast?, why): the DICOM contrast tag, else the median HU of the labelled (non-calcified)
    artery voxels against stage 1's blood-pool threshold (iodine makes the lumen bright)."""
    from cacpipe.flags import CONTRAST_SUSPECTED
    from cacpipe.heart.qc import CONTRAST_HU

    for f in getattr(series, "flags", []):
        if f.code == CONTRAST_SUSPECTED:
            return True, "DICOM contrast tag"
    artery = np.isin(labels, list(ARTERY_ID.values()))
    if not artery.any():
        return None, "no artery labelled"
    med = float(np.median(hu[artery]))
    return med > CONTRAST_HU, f"median artery HU {med:.0f} ({'>' if med > CONTRAST_HU else '<='} {CONTRAST_HU:.0f})"


def extent_mm(labels: np.ndarray, spacing_zyx) -> list[float] | None:
    """Size (mm, z y x) of the bounding box of the labelled voxels, None when nothing is labelled."""
    idx = [np.flatnonzero(labels.any(axis=tuple(j for j in range(3) if j != k))) for k in range(3)]
    if any(len(i) == 0 for i in idx):
        return None
    return [round(float((i[-1] - i[0] + 1) * s), 1) for i, s in zip(idx, spacing_zyx, strict=True)]


def check_loaded(chk: CaseCheck, loaded) -> CaseCheck:
    """Fill ``chk`` from a loaded case (``label_tools.convert.LoadedCase``): facts, failures, warnings."""
    series, lab = loaded.series, loaded.labels.array
    ct = loaded.ct
    hu = ct.array
    ident = series.identity
    chk.input_kind = chk.input_kind or ident.input_kind
    chk.scanner, chk.kernel = _scanner(series)
    chk.slice_thickness_mm = ident.slice_thickness_mm
    chk.spacing_zyx = [round(float(s), 4) for s in ct.spacing_zyx]
    chk.shape_zyx = list(ct.shape)
    chk.voxels_by_class = dict(loaded.report.get("voxels_by_class") or {})
    chk.labelled_extent_mm_zyx = extent_mm(lab > 0, ct.spacing_zyx)
    chk.contrast, chk.contrast_reason = contrast_of(series, hu, lab)

    sample = hu.ravel()[:: max(1, hu.size // 2_000_000)]
    if float(sample.min()) > AIR_CHECK_HU:
        chk.fail(f"no voxel below {AIR_CHECK_HU:g} HU (lowest {float(sample.min()):.0f}): the image does not look "
                 "like a CT in HU (rescale slope/intercept missing? a mask exported as the image?)")
    if not any(chk.voxels_by_class.get(a, 0) + chk.voxels_by_class.get(f"{a}_calcium", 0) for a in ARTERIES):
        chk.fail("no artery is labelled (empty contours or label map)")
    else:
        missing = [a for a in ARTERIES if not (lab == ARTERY_ID[a]).any() and not (lab == CALCIUM_ID[a]).any()]
        if missing:
            chk.warnings.append(f"no label for {', '.join(missing)}")
    order = loaded.report.get("slice_order_check") or {}
    frac = order.get("fraction_ge_130")
    chk.calcium_fraction_ge_130 = frac
    if frac is not None and frac < MIN_CALCIUM_FRACTION:
        rev = order.get("fraction_ge_130_reversed")
        hint = (f"; with the slice order reversed it would be {rev:.0%}: try --slice-order reversed"
                if rev is not None and rev > 2 * frac else
                "; check that the image is the annotated series and that the calcium contour type is mapped to "
                "calcium (--mapping)")
        chk.fail(f"only {frac:.0%} of the calcium-labelled voxels are >= {CALCIUM_THRESHOLD_HU:g} HU "
                 f"(calcium is drawn on bright voxels){hint}")
    cal = loaded.report.get("calcium") or {}
    comp = cal.get("components") or {}
    if comp.get("orphan_dropped"):
        chk.warnings.append(f"{comp['orphan_dropped']} calcium component(s) far from every artery were dropped")
    if comp.get("ambiguous"):
        chk.warnings.append(f"{comp['ambiguous']} calcium component(s) touch two arteries and were split")
    if not 0.5 <= ct.spacing_zyx[0] <= 3.0:
        chk.warnings.append(f"slice spacing {ct.spacing_zyx[0]:.2f} mm is outside 0.5-3 mm (cacpipe scan would "
                            "skip this series)")
    return chk


def check_case(case, mapping=None, options=None) -> tuple[CaseCheck, object | None]:
    """Check one case (a :class:`label_tools.annotations.Case` or any object with ``case``,
    ``patient_id``, ``source`` and ``load(mapping, options)``); returns (check, loaded case or None).

    Never raises for a bad case: every problem is recorded in the check.
    """
    chk = CaseCheck(case.case, case.patient_id, str(getattr(case, "source", "")))
    try:
        loaded = case.load(mapping, options)
    except CacpipeError as exc:
        chk.fail(str(exc))
        return chk, None
    except Exception as exc:  # noqa: BLE001 - an unreadable case must not stop the check of the others
        chk.fail(f"unexpected {type(exc).__name__}: {exc}")
        return chk, None
    return check_loaded(chk, loaded), loaded
