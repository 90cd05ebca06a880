"""``cacpipe progression`` as a function: group, register each consecutive pair, match, measure change.

The returned document (schema :data:`SCHEMA`) is what progression.json holds: per patient the
studies in time order (with per-artery values), per consecutive pair the registration, the
lesion events with match ids (``L1``, ``L2``, ...: one id per lesion track across all of the
patient's studies) and the per-artery change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import InputDataError
from ..labels import ARTERIES
from ..volume import Volume
from .group import Grouping, Study, load_studies, read_mapping
from .match import (
    LEFT,
    REPEATABILITY_SOURCE,
    SQRT_VOLUME_THRESHOLD,
    artery_change,
    gate_mm,
    lesions_at,
    match_lesions,
)
from .register import RegistrationError, register

SCHEMA = "cacpipe.progression/1"
log = logging.getLogger("cacpipe.progression")


def _volumes(study: Study, cache: dict) -> tuple[Volume, Volume]:
    """The study's CT and label map (``cache`` keeps the last two read: a pair, then the next)."""
    if study.study_uid in cache:
        return cache[study.study_uid]
    res = study.result
    paths = [study.folder / (res.outputs.get(k) or f"{k}.nii.gz") for k in ("ct", "labels")]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise InputDataError(f"{study.folder} lacks {', '.join(missing)} (scan with the default outputs)")
    vols = Volume.read(paths[0]), Volume.read(paths[1])
    while len(cache) >= 2:
        cache.pop(next(iter(cache)))
    cache[study.study_uid] = vols
    return vols


def _study_record(s: Study) -> dict:
    st, prov = s.result.study, s.result.provenance()
    arts = {a: {"agatston": s.result.arteries[a].agatston, "volume_mm3": s.result.arteries[a].calcium_volume_mm3,
                "lesions": s.result.arteries[a].lesions, "assessed": s.result.arteries[a].assessed} for a in ARTERIES}
    return {"study_uid": st.study_uid, "study_date": st.study_date, "patient_id": st.patient_id,
            "folder": str(s.folder.name), "manufacturer": st.manufacturer, "slice_thickness_mm": st.slice_thickness_mm,
            "status": s.result.status, "total_agatston": s.result.total.agatston,
            "made_by": prov.line(), "model_id": prov.model_id, "heart_locator": prov.heart_locator,
            "total_volume_mm3": s.result.total.calcium_volume_mm3, "arteries": arts}


def patient_progression(studies: list[Study], threshold: float = SQRT_VOLUME_THRESHOLD,
                        views: dict | None = None, study_outputs: dict | None = None) -> dict:
    """Pairs of consecutive studies of one patient, with lesion tracks over all of them.

    ``views``: when a dict, it receives (prior uid, current uid) -> match id -> [prior PNG, current
    PNG] (cacpipe.progression.views) for the page. ``study_outputs``: when a dict ({"salt": ...}),
    each current study gets prior/prior.json and its review page and SR rebuilt with the prior
    (cacpipe.progression.study_outputs); each pair then says what was written."""
    tracks: dict[int, str] = {i: f"L{i + 1}" for i in range(len(studies[0].result.lesions))}
    next_id = len(tracks) + 1
    cache: dict = {}
    pairs = []
    chain: list = [None]  # per study: its map into the previous study's space (None: identity)
    ended: dict[str, tuple] = {}  # track id -> (study index, lesion index, LesionAt in the first study's space)
    for k in range(1, len(studies)):
        a, b = studies[k - 1], studies[k]
        years = (b.date - a.date).days / 365.25
        pair: dict = {"prior": a.study_uid, "current": b.study_uid, "years": round(years, 4)}
        reg = None
        try:
            reg = _register(a, b, cache)
            pair["registration"] = reg.record()
            to_prior = reg.to_prior
        except (RegistrationError, InputDataError) as exc:
            pair["registration"] = {"error": str(exc)}
            to_prior = None
            log.warning("%s: %s -> %s not registered (%s); lesions matched without registration",
                        a.subject, a.result.study.study_date, b.result.study.study_date, exc)
        prior_l, cur_l = lesions_at(a.result), lesions_at(b.result, to_prior)
        events = match_lesions(prior_l, cur_l, threshold)
        chain.append(to_prior)
        _reappeared(events, cur_l, ended, chain, k - 1, studies)
        if to_prior is not None:
            _missed_before(events, cur_l, _volumes(a, cache)[0])
        new_tracks: dict[int, str] = {}
        for e in events:
            if e["current"] is not None and e["prior"] is not None and e["status"] != "merged":
                new_tracks.setdefault(e["current"], tracks.get(e["prior"], f"L{next_id}"))
            elif e["status"] == "reappeared":
                new_tracks[e["current"]] = e.pop("track")
        for e in sorted(events, key=lambda e: (e["current"] is None, e["current"] or 0)):
            if e["current"] is not None and e["current"] not in new_tracks:
                new_tracks[e["current"]] = f"L{next_id}"
                next_id += 1
            e["match_id"] = new_tracks.get(e["current"]) if e["current"] is not None else tracks.get(e["prior"])
            e["prior_lesion"] = None if e["prior"] is None else prior_l[e["prior"]].name
            e["current_lesion"] = None if e["current"] is None else cur_l[e["current"]].name
            e["prior_volume_mm3"] = None if e["prior"] is None else round(prior_l[e["prior"]].volume_mm3, 3)
            e["current_volume_mm3"] = None if e["current"] is None else round(cur_l[e["current"]].volume_mm3, 3)
        pair["lesions"] = sorted(events, key=lambda e: (int(e["match_id"][1:]) if e.get("match_id") else 0))
        pair["counts"] = {s: sum(1 for e in events if e["status"] == s)
                          for s in ("new", "reappeared", "missed_before", "grown", "stable", "smaller", "merged",
                                    "gone")}
        for e in events:  # a track that ends here may reappear in a later study
            if e["status"] == "gone" and e.get("match_id"):
                les = prior_l[e["prior"]]
                ended[e["match_id"]] = (k - 1, e["prior"], replace(les, xyz=_to_first(chain, k - 1, les.xyz)))
        pair["arteries"] = artery_change(a.result, b.result, years, threshold)
        pair["same_method"] = same_method(a, b)
        if views is not None:
            views[(a.study_uid, b.study_uid)] = _views(a, b, reg, events, prior_l, cur_l, cache)
        if study_outputs is not None:
            pair["study_outputs"] = _study_outputs(a, b, pair, reg, prior_l, cur_l, threshold, cache,
                                                   study_outputs.get("salt"))
        tracks = new_tracks
        pairs.append(pair)
    return {"studies": [_study_record(s) for s in studies], "pairs": pairs}


def same_method(a: Study, b: Study) -> bool:
    """Whether both studies were measured by the same model and heart locator: otherwise part of
    any change may be the method's, and the pair says so."""
    pa, pb = a.result.provenance(), b.result.provenance()
    return (pa.model_id, pa.model_name, pa.heart_locator) == (pb.model_id, pb.model_name, pb.heart_locator)


def _to_first(chain: list, k: int, xyz):
    """A point of study ``k``'s space in the first study's space (through each pair's registration)."""
    for j in range(k, 0, -1):
        if chain[j] is not None:
            xyz = chain[j](xyz[None])[0]
    return xyz


def _reappeared(events: list[dict], cur_l: list, ended: dict, chain: list, k: int, studies: list[Study]) -> None:
    """``new`` lesions that lie where an earlier study had a lesion whose track ended (a lesion a
    scan in between missed) become ``reappeared`` with that track's id."""
    for e in events:
        if e["status"] != "new" or not ended:
            continue
        c = replace(cur_l[e["current"]], xyz=_to_first(chain, k, cur_l[e["current"]].xyz))
        best = None
        for tid, (si, li, les) in ended.items():
            d = float(np.linalg.norm(les.xyz - c.xyz))
            if (les.artery == c.artery or (les.artery in LEFT and c.artery in LEFT)) and d <= gate_mm(les, c):
                if best is None or d < best[0]:
                    best = (d, tid, si, li)
        if best is not None:
            d, tid, si, li = best
            e.update(status="reappeared", track=tid, earlier_study=studies[si].study_uid, earlier_lesion=li,
                     distance_mm=round(d, 2))
            del ended[tid]


def _missed_before(events: list[dict], cur_l: list, prior_ct: Volume) -> None:
    """``new`` lesions with calcium at their place on the prior CT become ``missed_before``
    (cacpipe.progression.prior_look); every ``new`` lesion records what the prior CT has there."""
    from .prior_look import prior_calcium, seen_before

    for e in events:
        if e["status"] != "new":
            continue
        les = cur_l[e["current"]]
        found = prior_calcium(prior_ct, les.xyz, les.extent_mm)
        e["prior_image"] = found
        if seen_before(found):
            e["status"] = "missed_before"


def _views(a: Study, b: Study, reg, events: list[dict], prior_l, cur_l, cache: dict) -> dict:
    from .views import pair_views

    positions = {}
    for e in events:
        if e.get("match_id") and e["match_id"] not in positions:
            les = prior_l[e["prior"]] if e["prior"] is not None else cur_l[e["current"]]
            positions[e["match_id"]] = les.xyz
    try:
        return pair_views(_volumes(a, cache)[0], _volumes(b, cache)[0], None if reg is None else reg.transform,
                          positions)
    except InputDataError:
        return {}


def _study_outputs(a: Study, b: Study, pair: dict, reg, prior_l, cur_l, threshold: float, cache: dict,
                   salt: str | None) -> dict:
    from .study_outputs import prior_document, write_study_outputs

    source = REPEATABILITY_SOURCE if threshold == SQRT_VOLUME_THRESHOLD else "given with --repeatability"
    doc = prior_document(a, b, pair, reg, prior_l, cur_l, threshold, source)
    try:
        ct, labels = _volumes(b, cache)
    except InputDataError as exc:
        return {"notes": [str(exc)]}
    done = write_study_outputs(b, doc, ct, labels, salt)
    for note in done["notes"]:
        log.warning("%s %s: %s", b.subject, b.result.study.study_date, note)
    return done


def _register(a: Study, b: Study, cache: dict):
    ct_a, lab_a = _volumes(a, cache)
    ct_b, lab_b = _volumes(b, cache)
    return register(ct_a, ct_b, lab_a, lab_b)


def run_progression(results: str | Path, mapping: str | Path | None = None,
                    threshold: float = SQRT_VOLUME_THRESHOLD,
                    progress: Callable[[int, int, str], None] | None = None, views: dict | None = None,
                    study_outputs: dict | None = None) -> dict:
    """Progression of every patient of ``results`` with more than one done study (``views``,
    ``study_outputs``: see :func:`patient_progression`)."""
    grouping: Grouping = load_studies(results, read_mapping(mapping) if mapping else None)
    serial = grouping.serial
    patients = {}
    for n, (subject, studies) in enumerate(sorted(serial.items()), start=1):
        patients[subject] = patient_progression(studies, threshold, views, study_outputs)
        if progress is not None:
            progress(n, len(serial), subject)
    source = REPEATABILITY_SOURCE if threshold == SQRT_VOLUME_THRESHOLD else "given with --repeatability"
    return {"schema": SCHEMA, "results": str(results),
            "repeatability": {"sqrt_volume_threshold": threshold, "source": source},
            "patients": patients,
            "single_study_patients": sorted(k for k, v in grouping.patients.items() if len(v) == 1),
            "skipped": grouping.skipped}
