"""What ``cacpipe progression`` adds to each later study's own outputs.

A reader opens the current study, not a progression report: so for each consecutive pair, the
current study's folder gets ``prior/prior.json`` (cacpipe.review.prior: the prior study, the
registration, the per-artery change, the lesion events with match ids at their positions), and
its review page (review.html) and DICOM SR (dicom/sr.dcm) are rebuilt from it: the page shows the
prior CT beside the viewer on the same slices with the match ids, the SR carries the prior values
and the change per artery. Any later rebuild of the study's review outputs (``cacpipe review
apply``) keeps them, as long as prior.json was written for that result.

The page is rebuilt from the study folder's ct.nii.gz and labels.nii.gz (no source DICOM needed);
the SR from the study's own SEG and previous SR (their evidence lists the source slices), as a new
SR instance in the same series. A page made with a given anonymisation secret (``review.salt``)
is rebuilt only when the secret is given again; an SR a reader verified (``review apply``) is left
as it is (its reader did not see the prior): both are said in the returned notes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pydicom

from ..files import make_private_dir, protect, write_private_text
from ..jsonfile import write_json
from ..record import StudyResult
from ..volume import Volume
from .group import Study
from .match import physical

log = logging.getLogger("cacpipe.progression")


def prior_document(a: Study, b: Study, pair: dict, reg, prior_l: list, cur_l: list, threshold: float,
                   source: str) -> dict:
    """prior.json of study ``b`` (schema cacpipe.review.prior.SCHEMA): ``a`` its prior, ``pair`` the
    pair's record (lesion events with match ids), ``reg`` the registration (None: not registered)."""
    from ..review.prior import SCHEMA, lesion_key

    to_current = (lambda xyz: reg.to_current(np.asarray(xyz)[None])[0]) if reg is not None else (lambda xyz: xyz)
    events = []
    for e in pair["lesions"]:
        if e["current"] is not None:  # where it is now (current space)
            les = b.result.lesions[e["current"]]
            xyz, ext = physical(b.result, les.centre_zyx), cur_l[e["current"]].extent_mm
        else:  # gone: where it was, mapped into the current space
            xyz, ext = to_current(prior_l[e["prior"]].xyz), prior_l[e["prior"]].extent_mm
        events.append({k: e.get(k) for k in ("match_id", "status", "artery", "artery_prior", "prior_lesion",
                                             "current_lesion", "prior_volume_mm3", "current_volume_mm3",
                                             "distance_mm")}
                      | {"xyz": [round(float(v), 2) for v in xyz], "extent_mm": round(float(ext), 2)})
    inv = None
    if reg is not None:
        t = reg.transform.GetInverse()
        m = np.asarray(t.GetMatrix(), float).reshape(3, 3)
        c, tr = np.asarray(t.GetCenter(), float), np.asarray(t.GetTranslation(), float)
        inv = {"matrix": [round(float(v), 8) for v in m.ravel()],
               "offset": [round(float(v), 5) for v in tr + c - m @ c]}
    return {
        "schema": SCHEMA, "current_study_uid": b.study_uid, "lesion_key": lesion_key(b.result),
        "prior": {"study_uid": a.study_uid, "study_date": a.result.study.study_date,
                  "folder": os.path.relpath(a.folder, b.folder),
                  "ct": a.result.outputs.get("ct") or "ct.nii.gz",
                  "made_by": a.result.provenance().line(), "sr": _sr_reference(a)},
        "years": pair["years"], "same_method": pair.get("same_method"),
        "registration": pair["registration"], "current_to_prior": inv,
        "repeatability": {"sqrt_volume_threshold": threshold, "source": source},
        "arteries": pair["arteries"], "lesions": events,
    }


def _sr_reference(s: Study) -> dict | None:
    path = s.folder / (s.result.outputs.get("sr") or "dicom/sr.dcm")
    if not path.is_file():
        return None
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        return {"study_uid": str(ds.StudyInstanceUID), "series_uid": str(ds.SeriesInstanceUID),
                "sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID)}
    except Exception:  # noqa: BLE001 - an unreadable SR is not referenced
        return None


def write_study_outputs(b: Study, doc: dict, ct: Volume, labels: Volume, salt: str | None = None) -> dict:
    """Write ``doc`` as ``b``'s prior/prior.json and rebuild its review page and SR; returns what was
    done ({"prior_json", "review_html", "sr"} paths relative to the study folder, "notes")."""
    from ..review.prior import PRIOR_FILE

    folder = b.folder
    make_private_dir(folder / Path(PRIOR_FILE).parent)
    protect([write_json(folder / PRIOR_FILE, doc)])
    out: dict = {"prior_json": PRIOR_FILE, "notes": []}
    res = b.result
    settings = _settings(res)
    if not (folder / "review.html").is_file() or not settings.review.enabled:
        out["notes"].append("no review page to update (review outputs off)")
    else:
        anon = res.pipeline.get("anonymisation") or {}
        if anon.get("secret") == "given" and not salt:
            out["notes"].append("review page not updated: it was made with a given anonymisation secret "
                                "(pass it with --salt)")
        else:
            _rebuild_page(folder, ct, labels, res, settings.review, salt or None)
            out["review_html"] = "review.html"
    sr_path = folder / (res.outputs.get("sr") or "dicom/sr.dcm")
    if sr_path.is_file():
        note = _rewrite_sr(folder, sr_path, res, doc)
        if note:
            out["notes"].append(note)
        else:
            out["sr"] = sr_path.relative_to(folder).as_posix()
    return out


def _settings(res: StudyResult):
    import copy

    from ..config import Settings

    tree = copy.deepcopy(res.pipeline.get("settings") or {})
    if isinstance(tree.get("review"), dict):
        tree["review"]["salt"] = None  # recorded by its public name only
    return Settings.from_dict(tree, "result.json pipeline.settings")


def _rebuild_page(folder: Path, ct: Volume, labels: Volume, res: StudyResult, options, salt: str | None) -> None:
    from ..review.overlays import display_labels
    from ..review.page import study_page
    from ..review.prior import read_prior

    summary = folder / "overlays" / "summary.png"
    shown = display_labels(ct, labels)
    page = study_page(ct, shown, res, summary.read_bytes() if summary.is_file() else None, options, salt or "",
                      prior=read_prior(folder, res), study_dir=folder)
    write_private_text(folder / "review.html", page)


def _stand_ins(old: pydicom.Dataset) -> tuple[list[pydicom.Dataset], set[str]]:
    """The source slices an SR's evidence lists, as header stand-ins with the SR's patient and study
    attributes (what highdicom copies from the first evidence item), and the evidence series."""
    keep = [e for e in old if e.tag.group == 0x0010 or e.keyword in (
        "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
        "StudyDescription", "SpecificCharacterSet")]
    out, series = [], set()
    for study in old.get("CurrentRequestedProcedureEvidenceSequence", []):
        for se in study.get("ReferencedSeriesSequence", []):
            series.add(str(se.SeriesInstanceUID))
            for ref in se.get("ReferencedSOPSequence", []):
                ds = pydicom.Dataset()
                for e in keep:
                    ds.add(e)
                ds.StudyInstanceUID = study.StudyInstanceUID
                ds.SeriesInstanceUID = se.SeriesInstanceUID
                ds.SOPClassUID, ds.SOPInstanceUID = ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID
                out.append(ds)
    return out, series


def _rewrite_sr(folder: Path, sr_path: Path, res: StudyResult, doc: dict) -> str | None:
    """A new SR with the prior (same series, new instance); a note instead when it cannot be."""
    from ..review.dicom_out import declare_character_set, make_sr

    old = pydicom.dcmread(str(sr_path))
    if str(old.get("VerificationFlag", "")) == "VERIFIED":
        return "SR left as it is: a reader verified it (cacpipe review apply) without the prior"
    seg_path = folder / (res.outputs.get("seg") or "dicom/seg.dcm")
    if not seg_path.is_file():
        return "SR not updated: the study's SEG is not there"
    seg = pydicom.dcmread(str(seg_path), stop_before_pixels=True)
    sources = [d for d in _stand_ins(old)[0] if d.SOPInstanceUID != seg.SOPInstanceUID]
    if not sources:
        return "SR not updated: its evidence lists no source slice"
    new = make_sr(res, seg, sources, int(old.SeriesNumber), verification=None, prior=doc)
    new.SeriesInstanceUID = old.SeriesInstanceUID  # the same series: a newer instance of the report
    new.InstanceNumber = int(old.get("InstanceNumber", 1)) + 1
    declare_character_set(new).save_as(sr_path)
    protect([sr_path])
    return None
