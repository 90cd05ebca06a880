"""The two public CAC datasets as distributed: find their cases, check the layout at start.

Stanford COCA ("Coronary Calcium and chest CTs", Stanford AIMI), DATASET_DIR holding either the
release folder or its parent::

    Gated_release_final/patient/<case>/<series folder>/*.dcm      gated calcium-scoring CT
    Gated_release_final/calcium_xml/<case>.xml                    per-lesion contours (plist)
    deidentified_nongated/<case>/<series folder>/*.dcm           non-gated chest CT
    deidentified_nongated/scores.xlsx (or scores.csv)            Agatston per vessel, row id "<case>A"

orCaScore (MICCAI 2014 challenge), DATASET_DIR holding ``Training Set`` (and ``Test Set``, which
has no public reference and is therefore listed, not scored)::

    Training Set/Images/TRV<v>P<p>CTI.mhd (+ .raw; CTAI = the contrast scan, not scored)
    Training Set/Reference standard/TRV<v>P<p>R.mhd               0 / 1 LAD / 2 LCX / 3 RCA

Every check raises :class:`DatasetLayoutError` with one line naming what is missing or unexpected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputDataError

DATASETS = ("coca", "orcascore")
SUBSETS = ("gated", "nongated")

COCA_GATED = "Gated_release_final"
COCA_NONGATED = "deidentified_nongated"
COCA_SCORE_FILES = ("scores.xlsx", "scores.csv")
ORCA_SETS = ("Training Set", "Test Set")
ORCA_IMAGES = "Images"
ORCA_REFERENCE = "Reference standard"
ORCA_IMAGE_RE = re.compile(r"^(?P<case>(TR|TE|VA)V\d+P\d+)CTI\.mhd$", re.IGNORECASE)


class DatasetLayoutError(InputDataError):
    """DATASET_DIR is not laid out as the dataset is distributed (exit 2, one line)."""


@dataclass(frozen=True)
class Case:
    """One case of a dataset: its CT (a DICOM series folder or an image file) and its reference."""

    dataset: str  # "coca" | "orcascore"
    subset: str  # "gated" | "nongated" (orCaScore: "gated")
    case_id: str
    image: Path  # DICOM series folder (COCA) or CTI.mhd (orCaScore)
    annotation: Path | None = None  # COCA gated: <case>.xml; orCaScore: <case>R.mhd; None: scores only
    scores: dict | None = field(default=None, compare=False)  # COCA non-gated: {"LM", "LAD", "LCX", "RCA", "total"}

    @property
    def is_image_file(self) -> bool:
        return self.image.is_file()


def _natural(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _release_root(root: Path, name: str) -> Path | None:
    """``root/name`` or ``root`` itself when it is that folder (or a doubled ``name/name`` from unzipping)."""
    for cand in (root / name / name, root / name, root):
        if cand.name == name and cand.is_dir():
            return cand
    return None


def _series_folder(case_dir: Path) -> Path:
    """The one folder of DICOM files of a COCA case (``<case>/<series folder>/*.dcm``)."""
    dcm_dirs = sorted({p.parent for p in case_dir.rglob("*") if p.suffix.lower() == ".dcm" and p.is_file()},
                      key=lambda p: _natural(str(p)))
    if not dcm_dirs:
        raise DatasetLayoutError(f"COCA case folder {case_dir} holds no .dcm file (expected "
                                 f"{case_dir}/<series folder>/*.dcm)")
    if len(dcm_dirs) > 1:
        raise DatasetLayoutError(f"COCA case folder {case_dir} holds DICOM files in {len(dcm_dirs)} folders "
                                 f"({', '.join(str(d.relative_to(case_dir)) for d in dcm_dirs[:3])}); expected one series folder")
    return dcm_dirs[0]


def coca_cases(root: str | Path, subset: str = "gated") -> list[Case]:
    """The cases of one COCA subset, in natural order of their folder names (layout checked)."""
    root = Path(root)
    if subset not in SUBSETS:
        raise DatasetLayoutError(f"--subset {subset!r}: COCA has subsets {', '.join(SUBSETS)}")
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset folder not found: {root}")
    if subset == "gated":
        rel = _release_root(root, COCA_GATED)
        if rel is None:
            raise DatasetLayoutError(f"{root}: no {COCA_GATED}/ folder (the gated COCA release: "
                                     f"{COCA_GATED}/patient/<case>/ and {COCA_GATED}/calcium_xml/)")
        patients, xml = rel / "patient", rel / "calcium_xml"
        for need in (patients, xml):
            if not need.is_dir():
                raise DatasetLayoutError(f"{rel}: missing folder {need.name}/ (expected patient/<case>/<series>/*.dcm "
                                         "and calcium_xml/<case>.xml)")
        dirs = sorted((d for d in patients.iterdir() if d.is_dir()), key=lambda d: _natural(d.name))
        if not dirs:
            raise DatasetLayoutError(f"{patients}: no case folder")
        xmls = {p.stem for p in xml.glob("*.xml")}
        stray = sorted(xmls - {d.name for d in dirs}, key=_natural)
        if stray:
            raise DatasetLayoutError(f"{xml}: {len(stray)} annotation file(s) without a case folder in {patients} "
                                     f"(e.g. {stray[0]}.xml)")
        # Cases without an XML file have no calcium: the release annotates calcium only (zero-score scans).
        return [Case("coca", "gated", d.name, _series_folder(d), xml / f"{d.name}.xml" if d.name in xmls else None)
                for d in dirs]
    rel = _release_root(root, COCA_NONGATED)
    if rel is None:
        raise DatasetLayoutError(f"{root}: no {COCA_NONGATED}/ folder (the non-gated COCA release: "
                                 f"{COCA_NONGATED}/<case>/<series>/*.dcm and {COCA_NONGATED}/scores.xlsx)")
    score_file = next((rel / n for n in COCA_SCORE_FILES if (rel / n).is_file()), None)
    if score_file is None:
        raise DatasetLayoutError(f"{rel}: missing the score spreadsheet ({' or '.join(COCA_SCORE_FILES)})")
    from .scores import read_scores

    scores = read_scores(score_file)
    dirs = sorted((d for d in rel.iterdir() if d.is_dir()), key=lambda d: _natural(d.name))
    if not dirs:
        raise DatasetLayoutError(f"{rel}: no case folder")
    missing = [d.name for d in dirs if d.name not in scores]
    if missing:
        raise DatasetLayoutError(f"{score_file.name}: no score row for {len(missing)} case folder(s) (e.g. "
                                 f"{missing[0]}, row id {missing[0]}A)")
    return [Case("coca", "nongated", d.name, _series_folder(d), None, scores[d.name]) for d in dirs]


def orcascore_cases(root: str | Path) -> tuple[list[Case], list[str]]:
    """The orCaScore cases with a reference, and notes on what is listed but not scored (layout checked)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset folder not found: {root}")
    base = root if (root / ORCA_IMAGES).is_dir() else None
    sets = [root / s for s in ORCA_SETS if (root / s).is_dir()]
    if base is None and not sets:
        raise DatasetLayoutError(f"{root}: no 'Training Set/' (or 'Test Set/') folder with Images/ and "
                                 "'Reference standard/' (the orCaScore layout)")
    cases, notes = [], []
    for s in ([base] if base is not None else sets):
        images, refs = s / ORCA_IMAGES, s / ORCA_REFERENCE
        if not images.is_dir():
            raise DatasetLayoutError(f"{s}: missing folder {ORCA_IMAGES}/ (expected <case>CTI.mhd files)")
        found = sorted((p for p in images.iterdir() if ORCA_IMAGE_RE.match(p.name)), key=lambda p: _natural(p.name))
        if not found:
            raise DatasetLayoutError(f"{images}: no <case>CTI.mhd image (e.g. TRV1P1CTI.mhd)")
        for p in found:
            raw = p.with_suffix(".raw")
            if not raw.exists() and not p.with_suffix(".zraw").exists() and "ElementDataFile = LOCAL" not in _head(p):
                raise DatasetLayoutError(f"{p}: its data file {raw.name} is missing")
        if not refs.is_dir():
            notes.append(f"{s.name}: no '{ORCA_REFERENCE}/' folder: its {len(found)} image(s) have no public reference "
                         "and are not scored")
            continue
        for p in found:
            cid = ORCA_IMAGE_RE.match(p.name).group("case")
            ref = refs / f"{cid}R.mhd"
            if not ref.exists():
                raise DatasetLayoutError(f"{refs}: missing {ref.name}, the reference of {p.name}")
            cases.append(Case("orcascore", "gated", cid, p, ref))
    if not cases:
        raise DatasetLayoutError(f"{root}: no orCaScore image has a reference standard ('Training Set/Reference "
                                 "standard/<case>R.mhd')")
    return cases, notes


def _head(p: Path) -> str:
    try:
        return p.read_text(errors="replace")[:4000]
    except OSError:
        return ""


def find_cases(dataset: str, root: str | Path, subset: str | None = None) -> tuple[list[Case], list[str]]:
    """Cases of ``dataset`` under ``root`` (COCA: ``subset`` gated | nongated, default gated)."""
    if dataset == "coca":
        return coca_cases(root, subset or "gated"), []
    if dataset == "orcascore":
        if subset not in (None, "gated"):
            raise DatasetLayoutError(f"--subset {subset}: orCaScore has gated cardiac CT only")
        return orcascore_cases(root)
    raise DatasetLayoutError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
