"""Where the compared numbers and label maps come from: a scan's results, a reference CSV, phantom truth.

- PRED: the cohort.csv of ``cacpipe scan`` (or its results folder); each study's label map is
  found through the run's manifest.json (``studies[key]["result"]`` -> result.json ->
  ``outputs.labels``), never by re-deriving folder names.
- REF: a CSV; a folder with ``truth.csv`` (the phantom cohort writer); or a folder of phantom
  truth JSON files (``<PatientID>.json``, as ``cacpipe demo`` writes them, or
  ``<PatientID>/truth.json``).
- Reference label maps, keyed by study (PatientID or StudyUID, raw or as a safe folder name):
  ``<dir>/<key>/labels.nii.gz`` (with ``ct.nii.gz`` and/or ``truth_lesions.nii.gz`` beside it),
  ``<dir>/<key>.nii.gz`` (``cacpipe labels convert``), or a phantom truth JSON that records its
  generator config (the phantom is generated again; its volumes must reproduce the JSON's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..labels import ARTERIES, CALCIUM_ID
from ..quant.categories import cac_drs, category
from ..tables import frame, read_csv

COHORT = "cohort.csv"
MANIFEST = "manifest.json"
TRUTH_CSV = "truth.csv"
TRUTH_JSON = "truth.json"


# --- tables ---------------------------------------------------------------------------------
def load_prediction(path: str | Path, sep: str | None = None, decimal: str = ".") -> pd.DataFrame:
    """The cohort CSV (a results folder means its cohort.csv); attrs["results_dir"] = its folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / COHORT).exists():
            raise InputDataError(f"prediction folder {path} has no {COHORT}; give the cohort CSV of cacpipe scan")
        path = path / COHORT
    df = read_csv(path, "prediction", sep=sep, decimal=decimal)
    df.attrs["results_dir"] = str(path.parent)
    return df


def _truth_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.glob("*.json"))
    return files or sorted(folder.glob(f"*/{TRUTH_JSON}"))


def load_reference(path: str | Path, sep: str | None = None, decimal: str = ".") -> pd.DataFrame:
    """REF as a table: a CSV, a folder's truth.csv, or a folder of phantom truth JSON files.

    attrs["truth_dir"] is set for folders (where reference label maps may live).
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"reference not found: {path}")
    if path.is_file():
        df = read_csv(path, "reference", sep=sep, decimal=decimal)
        if path.name == TRUTH_CSV and (path.parent / "truth").is_dir():  # the phantom cohort writer's layout
            df.attrs["truth_dir"] = str(path.parent / "truth")
        return df
    if (path / TRUTH_CSV).exists():
        df = read_csv(path / TRUTH_CSV, "reference", sep=sep, decimal=decimal)
        if (path / "truth").is_dir():
            path = path / "truth"
    else:
        files = _truth_files(path)
        if not files:
            raise InputDataError(f"reference folder {path} has neither {TRUTH_CSV} nor phantom truth files "
                                 f"(<PatientID>.json or <PatientID>/{TRUTH_JSON})")
        df = frame([truth_record(_load_json(f), f) for f in files], path, "reference")
        df.attrs["notes"] = [f"reference: {len(files)} phantom truth files in {path}"]
    df.attrs["truth_dir"] = str(path)
    return df


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read phantom truth {path}: {exc}") from exc
    if not isinstance(data, dict) or "arteries" not in data or "total" not in data:
        raise InputDataError(f"{path} is not a phantom truth file (needs 'arteries' and 'total')")
    return data


def truth_record(data: dict, path: Path) -> dict:
    """One REF row from a phantom truth dict (cacpipe.phantom.truth.ground_truth + identifiers)."""
    uid = data.get("study_uid") or (data.get("dicom") or {}).get("study_uid")
    # <PatientID>.json names its patient; a folder's truth.json only when nothing else identifies it.
    pid = data.get("patient_id") or (path.stem if path.name != TRUTH_JSON else None if uid else path.parent.name)
    row: dict = {"patient_id": pid, "study_uid": uid}
    if data.get("study_date"):  # a patient's several studies (the demo's follow-up) are told apart by it
        row["study_date"] = str(data["study_date"])
    from ..phantom.truth import imaged_numbers  # the truth file's format is the phantom's

    try:  # the numbers as imaged (what a perfect reader sees on this scan), the still-heart Agatston beside
        num = imaged_numbers(data)
        arts = num["arteries"]
        for a in ARTERIES:
            v = arts[a]
            row[f"{a}_present"] = int(float(v["calcium_volume_mm3"]) > 0)
            for f in ("calcium_volume_mm3", "agatston", "lesions"):
                row[f"{a}_{f}"] = v.get(f)
            row[f"{a}_agatston_still"] = v.get("agatston_still")
        tot = num["total"]
        for f in ("calcium_volume_mm3", "agatston", "lesions"):
            row[f"total_{f}"] = tot.get(f)
        row["total_agatston_still"] = tot.get("agatston_still")
        row["category"] = category(tot["agatston"])
        row["cac_drs"] = cac_drs(tot["agatston"], [arts[a]["agatston"] for a in ARTERIES])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputDataError(f"phantom truth {path} lacks {exc} (per artery calcium_volume_mm3 and agatston, "
                             "total agatston)") from exc
    return {k: v for k, v in row.items() if not (k in ("patient_id", "study_uid") and v is None)}


# --- label maps -----------------------------------------------------------------------------
@dataclass
class LabelSource:
    """One study's six-class map (z, y, x) and what to threshold it with."""

    labels: object  # cacpipe.volume.Volume
    ct: object | None = None  # Volume of HU on any grid (resampled to labels' grid when needed)
    lesion_ids: object | None = None  # Volume of uint16 lesion ids (phantom truth_lesions), optional
    scan_ct: object | None = None  # the CT the scan was given, when the reference knows it (phantoms)
    origin: str = ""  # where it came from, for the report


@dataclass
class ScanResults:
    """What a scan's results folder says about its done studies (via manifest.json)."""

    labels: dict[str, Path]  # study_uid and patient_id -> labels.nii.gz
    provenance: list[str]  # distinct "model ..., heart locator ..." lines
    demo_model: bool  # any study segmented by the phantom demo model (not for clinical use)
    problems: list[str] = field(default_factory=list)  # result files that could not be read


def scan_results(results_dir: str | Path) -> ScanResults:
    """Label maps and provenance of each done study of a scan, found through its manifest."""
    from ..record import StudyResult

    results_dir = Path(results_dir)
    mpath = results_dir / MANIFEST
    if not mpath.exists():
        return ScanResults({}, [], False)
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputDataError(f"cannot read {mpath}: {exc}") from exc
    out = ScanResults({}, [], False)
    for entry in (manifest.get("studies") or {}).values():
        if entry.get("status") != "done" or not entry.get("result"):
            continue
        rpath = results_dir / entry["result"]
        try:
            res = StudyResult.load(rpath)
        except InputDataError as exc:
            out.problems.append(str(exc))
            continue
        lab = rpath.parent / (res.outputs.get("labels") or "labels.nii.gz")
        for k in (res.study.study_uid, res.study.patient_id, entry.get("study_uid"), entry.get("patient_id")):
            if k:
                out.labels.setdefault(str(k), lab)
        out.demo_model = out.demo_model or res.is_demo
        line = (f"model {res.model.get('name', '?')}"
                f"{' (phantom demo model: NOT FOR CLINICAL USE)' if res.is_demo else ''}"
                f", heart locator {res.heart_method or '?'}")
        if line not in out.provenance:
            out.provenance.append(line)
    return out


def read_prediction(labels_path: Path) -> LabelSource:
    from ..volume import Volume

    ct_path = labels_path.parent / "ct.nii.gz"
    return LabelSource(Volume.read(labels_path), Volume.read(ct_path) if ct_path.exists() else None,
                       origin=str(labels_path))


def _keys(ids: list[str]) -> list[str]:
    from ..scan.layout import safe_name

    out: list[str] = []
    for k in ids:
        for v in (k, safe_name(k)):
            if v and v not in out:
                out.append(v)
    return out


def find_reference(ref_dir: str | Path, ids: list[str]) -> LabelSource | None:
    """The reference label map of a study (see module docstring), or None when there is none."""
    from ..volume import Volume

    ref_dir = Path(ref_dir)
    for k in _keys(ids):
        folder = ref_dir / k
        if (folder / "labels.nii.gz").exists():
            ct = folder / "ct.nii.gz"
            les = folder / "truth_lesions.nii.gz"
            return LabelSource(Volume.read(folder / "labels.nii.gz"), Volume.read(ct) if ct.exists() else None,
                               Volume.read(les) if les.exists() else None, origin=str(folder / "labels.nii.gz"))
        for name in (f"{k}.nii.gz", f"{k}.nii"):
            if (ref_dir / name).exists():
                return LabelSource(Volume.read(ref_dir / name), origin=str(ref_dir / name))
    for k in _keys(ids):
        for jpath in (ref_dir / f"{k}.json", ref_dir / k / TRUTH_JSON):
            if jpath.exists():
                return phantom_reference(jpath)
    single = ref_dir / TRUTH_JSON  # one phantom folder (`cacpipe phantom OUT`): OUT/labels.nii.gz, ct.nii.gz
    if single.exists() and (ref_dir / "labels.nii.gz").exists():
        rec = truth_record(_load_json(single), single)
        if {rec.get("patient_id"), rec.get("study_uid")} & set(ids):
            ct = ref_dir / "ct.nii.gz"
            return LabelSource(Volume.read(ref_dir / "labels.nii.gz"), Volume.read(ct) if ct.exists() else None,
                               origin=str(ref_dir / "labels.nii.gz"))
    return None


def phantom_reference(path: Path) -> LabelSource | None:
    """Generate the phantom a truth JSON describes again; None if it records no usable config.

    The truth's per-artery calcium volumes must be reproduced exactly, else the config belongs to
    another phantom version and the map is refused (InputDataError).
    """
    from dataclasses import fields

    from ..phantom.anatomy import PhantomConfig, Plaque, generate

    data = _load_json(path)
    cfg = data.get("config")
    if not isinstance(cfg, dict):
        return None
    known = {f.name for f in fields(PhantomConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise InputDataError(f"{path}: phantom config has fields this cacpipe does not know ({unknown}); "
                             "write reference label maps (labels.nii.gz) beside the truth instead")
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()}
    kw["plaques"] = tuple(Plaque(**p) for p in cfg.get("plaques", ()))
    ph = generate(PhantomConfig(**kw))
    vox = ph.labels.voxel_volume_mm3
    for a in ARTERIES:
        want = float(data["arteries"][a]["calcium_volume_mm3"])
        got = float((ph.labels.array == CALCIUM_ID[a]).sum()) * vox
        if not np.isclose(want, got, rtol=1e-6, atol=1e-6):
            raise InputDataError(f"{path}: the phantom generated from its config has {a} calcium {got:.3f} mm3, "
                                 f"the truth says {want:.3f}; it was written by another phantom version")
    # ct_clean is the image the truth is defined on; ct (with noise) is what the scan was given.
    return LabelSource(ph.labels, ph.ct_clean, scan_ct=ph.ct, origin=f"phantom generated again from {path.name}")
