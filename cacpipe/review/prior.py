"""The prior study on a later study's review page and in its SR.

``cacpipe progression`` (cacpipe.progression.study_outputs) writes ``STUDY/prior/prior.json``
(schema :data:`SCHEMA`) into each study that has an earlier one of the same patient: the prior
study (date, folder, who measured it), the registration as a current -> prior affine map, the
per-artery change and the lesion events with their match ids, each at a position in the current
scan's space. Whenever the study's review outputs are (re)built, :func:`read_prior` picks it up:

- the page shows the prior CT beside the current one: the prior is resampled through the
  registration onto the page's own full-resolution grid (:func:`prior_page_data`), so slice k of
  the prior pane is the same anatomy as slice k of the viewer and follows its crosshair
  (static/prior.js); each lesion event is ringed and named by its match id (``L3 grown``), with the
  per-artery change and a lesion table whose rows select the current lesion;
- the SR carries, per artery, the prior values and the change (cacpipe.review.dicom_out).

A prior.json written for another version of the result (a rescan, ``review apply``) is ignored:
it records the result's lesions (:func:`lesion_key`) and must match them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..labels import ARTERIES
from ..record import StudyResult
from ..volume import Volume
from .assets import E

log = logging.getLogger(__name__)

PRIOR_FILE = "prior/prior.json"
SCHEMA = "cacpipe.prior/1"
# The prior pane's samples: uint8 codes, HU = PRIOR_HU_STEP * code + PRIOR_HU_MIN (-302..718 HU, 130 HU
# exactly representable): the calcium window at half the bytes of int16.
PRIOR_HU_STEP = 4
PRIOR_HU_MIN = -302


def lesion_key(result: StudyResult) -> str:
    """A fingerprint of a result's lesions (names and voxel counts): a prior.json is valid for it only."""
    text = json.dumps([[les.name, int(les.voxels)] for les in result.lesions])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_prior(study_dir: str | Path, result: StudyResult) -> dict | None:
    """``study_dir``'s prior.json when it was written for this result, else None."""
    path = Path(study_dir) / PRIOR_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s not readable (%s): the review outputs show no prior study", path, exc)
        return None
    if doc.get("schema") != SCHEMA or doc.get("current_study_uid") != result.study.study_uid:
        log.warning("%s is not this study's (%s): ignored", path, result.study.study_uid)
        return None
    if doc.get("lesion_key") != lesion_key(result):
        log.warning("%s was written for another version of this study's result: ignored (run `cacpipe "
                    "progression` again)", path)
        return None
    return doc


def current_to_prior(doc: dict):
    """The registration as a SimpleITK transform current -> prior (None: not registered)."""
    import SimpleITK as sitk

    m = doc.get("current_to_prior")
    if not m:
        return None
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([float(v) for v in m["matrix"]])
    tx.SetTranslation([float(v) for v in m["offset"]])
    return tx


def prior_volume(doc: dict, study_dir: Path, ct: Volume, box: tuple[slice, slice, slice]):
    """The prior CT resampled onto ``box`` of the current grid (a PageVolume), or (None, why not)."""
    import SimpleITK as sitk

    from .viewer_data import PageVolume, ras_affine

    path = (Path(study_dir) / doc["prior"]["folder"] / (doc["prior"].get("ct") or "ct.nii.gz")).resolve()
    if not path.is_file():
        return None, f"the prior study's CT ({doc['prior']['folder']}) is not there"
    tx = current_to_prior(doc) or sitk.Transform()
    prior = Volume.read(path).to_sitk()
    off = tuple(int(s.start) for s in box)
    shape = tuple(int(s.stop - s.start) for s in box)
    ref = sitk.Image([shape[2], shape[1], shape[0]], sitk.sitkFloat32)
    ref.SetSpacing(tuple(float(s) for s in ct.spacing_zyx[::-1]))
    ref.SetOrigin(tuple(float(v) for v in ct.index_to_physical(np.array([off], float))[0]))
    ref.SetDirection(ct.direction)
    hu = sitk.GetArrayFromImage(sitk.Resample(prior, ref, tx, sitk.sitkLinear, -1024.0, sitk.sitkFloat32))
    codes = np.clip(np.rint((hu - PRIOR_HU_MIN) / PRIOR_HU_STEP), 0, 255).astype(np.uint8)
    aff = ras_affine(ct, off, (1, 1, 1))
    return PageVolume("prior", codes, off, (1, 1, 1), aff, float(PRIOR_HU_STEP), float(PRIOR_HU_MIN)), ""


def prior_page_data(doc: dict, study_dir: Path, ct: Volume, box: tuple[slice, slice, slice],
                    show_date: bool = True) -> dict:
    """What static/prior.js reads: the prior volume on the page's heart grid and the lesion events
    at their positions (scored-series voxel z, y, x). ``show_date``: the page may show study dates
    (``review.fields`` has study_date); otherwise only the years between the studies."""
    vol, why = prior_volume(doc, study_dir, ct, box)
    events = []
    for e in doc.get("lesions", []):
        zyx = ct.physical_to_index(e["xyz"])[0] if e.get("xyz") else None
        events.append({k: e.get(k) for k in ("match_id", "status", "artery", "prior_lesion", "current_lesion",
                                              "prior_volume_mm3", "current_volume_mm3")}
                      | {"zyx": None if zyx is None else [round(float(v), 2) for v in zyx],
                         "extent_vox": e.get("extent_mm", 4.0) / float(min(ct.spacing_zyx))})
    p = doc["prior"]
    return {"volume": vol.encode() if vol is not None else None, "note": why,
            "study_date": _date(p.get("study_date")) if show_date else "",
            "years": doc.get("years"), "registered": bool(doc.get("current_to_prior")), "lesions": events}


def _num(v, nd: int = 1, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{float(v):+.{nd}f}" if sign else f"{float(v):.{nd}f}"


def _date(text: str | None) -> str:
    t = str(text or "")
    return f"{t[:4]}-{t[4:6]}-{t[6:8]}" if len(t) == 8 and t.isdigit() else (t or "unknown date")


def prior_section(doc: dict, show_date: bool = True) -> str:
    """The page's prior-study tables (``show_date``: see :func:`prior_page_data`)."""
    p = doc["prior"]
    reg = doc.get("registration") or {}
    regtxt = ("registered on the heart (rigid then affine)" if doc.get("current_to_prior")
              else f"NOT registered ({E(reg.get('error', 'no registration'))}): positions only approximate")
    warn = ("<p class=banner>The two studies were measured by different models or heart locators: part of the "
            "change may be the method's, not the patient's.</p>") if doc.get("same_method") is False else ""
    rep = doc.get("repeatability") or {}
    rows = []
    for a in (*ARTERIES, "total"):
        ch = (doc.get("arteries") or {}).get(a) or {}
        if not ch.get("assessed"):
            rows.append(f"<tr><th scope=row>{a}</th><td colspan=5 class=muted>not assessed on both</td></tr>")
            continue
        cls = " class=progression" if ch.get("progression") else ""
        verdict = ("progression" if ch.get("progression") else "decrease beyond repeatability"
                   if ch.get("exceeds_repeatability") else "within repeatability")
        rows.append(f"<tr{cls}><th scope=row>{a}</th><td class=num>{_num(ch.get('agatston_prior'))}</td>"
                    f"<td class=num>{_num(ch.get('agatston'))}</td>"
                    f"<td class=num>{_num(ch.get('agatston_change_per_year'), sign=True)}</td>"
                    f"<td class=num>{_num(ch.get('sqrt_volume_change'), 2, sign=True)}</td><td>{verdict}</td></tr>")
    les = []
    for e in doc.get("lesions", []):
        cur = e.get("current_lesion")
        sel = (f"<button type=button class=secondary data-prior-select='{E(cur)}'>{E(cur)}</button>" if cur else "-")
        les.append(f"<tr data-match='{E(e.get('match_id') or '')}'><td><b>{E(e.get('match_id') or '-')}</b></td>"
                   f"<td>{E(e.get('artery') or '')}</td><td>{E((e.get('status') or '').replace('_', ' '))}</td>"
                   f"<td>{E(e.get('prior_lesion') or '-')}</td><td>{sel}</td>"
                   f"<td class=num>{_num(e.get('prior_volume_mm3'))} &rarr; {_num(e.get('current_volume_mm3'))}</td></tr>")
    return f"""<section id=prior-study aria-label="prior study">
<h2>Prior study {E(_date(p.get('study_date'))) + ' &middot; ' if show_date else ''}{_num(doc.get('years'), 2)} years before</h2>
<p class=muted>{regtxt}; measured by {E(p.get('made_by') or 'unknown')}. The prior pane shows the prior CT resampled
onto this study's slices: it follows the viewer's crosshair (axial, calcium window, &ge; 130 HU tinted); rings name
each lesion by its match id (the same id in both studies).</p>{warn}
<table class=scores id=prior-change><thead><tr><th>artery</th><th class=num>Agatston prior</th><th class=num>now</th>
<th class=num>per year</th><th class=num title='square-root volume change, sqrt(mm3)'>&Delta;&radic;vol</th><th>change</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<p class=muted>Progression: &Delta;&radic;volume &ge; {_num(rep.get('sqrt_volume_threshold'), 1)}
({E(rep.get('source') or '')}). Each lesion's status follows the same rule on its own volume: grown or
smaller when its &radic;volume changed by at least that much, stable otherwise (so a small lesion can gain
mm&sup3; and still read stable).</p>
<table id=prior-lesions><thead><tr><th>match</th><th>artery</th><th>status</th><th>prior lesion</th>
<th>current lesion</th><th class=num>mm&sup3; prior &rarr; now</th></tr></thead><tbody>{''.join(les)}</tbody></table>
</section>"""


def prior_pane() -> str:
    """The prior image beside the viewer (filled by static/prior.js)."""
    return ("<figure class=prior-pane><div class=viewport id=prior-viewport><canvas id=prior-canvas "
            "aria-label='prior study, same slice'></canvas></div><figcaption id=prior-caption class=muted>prior"
            "</figcaption></figure>")
