"""The study review page: one self-contained HTML file per study (viewer, lesion table, live
scores, corrections, ratings). Layout here; behaviour in static/*.js; data in one JSON block.

Every string that comes from DICOM or the result is escaped with ``html.escape`` here, and data
for the scripts is JSON with ``<``, ``>`` and ``&`` written as ``\\u003c`` etc., read with
``JSON.parse`` and only ever put into the page with ``textContent``.
"""

from __future__ import annotations

import base64
import io
import logging
import math

import numpy as np
from PIL import Image

from .. import flags as F
from ..config import ReviewSettings
from ..labels import (
    ARTERIES,
    ARTERY_COLOURS,
    ARTERY_ID,
    ARTERY_LONG_NAMES,
    CALCIUM_COLOUR,
    CALCIUM_ID,
    CALCIUM_IDS,
)
from ..quant.agatston import MIN_LESION_AREA_MM2, density_weights
from ..quant.categories import CATEGORIES, CATEGORY_UPPER
from ..record import StudyResult
from ..units import AGATSTON_REFERENCE_SLICE_MM, CALCIUM_THRESHOLD_HU
from ..volume import Volume
from . import corrections as C
from .assets import CSP, E, inline_script, niivue_bundle, rgb, script_json, static_text
from .options import anonymised_id, display_items, page_patient_id, scrub
from .overlays import display_flips
from .viewer_data import CONTEXT_MM, page_volumes

log = logging.getLogger(__name__)

RATING_COLUMNS: tuple[str, ...] = ("rater", "patient_id", "study_uid", "artery", "rating", "comment", "timestamp")
RATINGS: tuple[str, ...] = ("excellent", "minor error", "major error")
STORAGE = {"ratings": "cacpipe.ratings|", "corrections": "cacpipe.corrections|", "reader": "cacpipe.rater"}
WINDOWS: dict[str, tuple[float, float]] = {  # (level, width) HU
    "calcium": (200.0, 800.0), "mediastinum": (40.0, 400.0), "lung": (-600.0, 1500.0),
}
SELECTED_ID = 7  # display-only label value of the selected lesion
SELECTED_COLOUR = (255, 0, 255)
SCRIPTS = ("common.js", "volumes.js", "calcium.js", "viewer_basic.js", "viewer_niivue.js", "study.js")


def png_data_uri(img: Image.Image | np.ndarray | bytes) -> str:
    """A PNG data URI of an image, or of PNG file bytes as they are (the summary.png already written)."""
    if isinstance(img, bytes):
        if not img.startswith(b"\x89PNG"):
            raise ValueError("png_data_uri: bytes given are not a PNG file")
        return "data:image/png;base64," + base64.b64encode(img).decode("ascii")
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)  # optimize=True costs seconds on a 1 MP image
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(v, nd: int = 1) -> str:
    return "n/a" if v is None else f"{float(v):.{nd}f}"


def label_table() -> tuple[list[list[int]], list[str]]:
    """Display colours (RGBA) and names per label value 0..SELECTED_ID, from cacpipe.labels."""
    lut = [[0, 0, 0, 0]] * (SELECTED_ID + 1)
    names = [""] * (SELECTED_ID + 1)
    for a in ARTERIES:
        lut[ARTERY_ID[a]] = [*ARTERY_COLOURS[a], 170]  # arteries half transparent, calcium opaque
        names[ARTERY_ID[a]] = a
        lut[CALCIUM_ID[a]] = [*CALCIUM_COLOUR, 255]
        names[CALCIUM_ID[a]] = f"{a} calcium"
    lut[SELECTED_ID] = [*SELECTED_COLOUR, 255]
    names[SELECTED_ID] = "selected lesion"
    return lut, names


def _severity_params(result: StudyResult) -> dict | None:
    """The severity model the study was graded with, for the page's live grades (None: not shown live)."""
    from ..quant.severity import SeverityModel

    path = ((result.pipeline.get("settings") or {}).get("quant") or {}).get("severity_model")
    try:
        model = SeverityModel.load(path) if path else SeverityModel.load_default()
    except Exception as exc:  # noqa: BLE001 - the page still works, grades are then not updated live
        log.warning("severity model %s not loadable for the review page (%s): grades are not updated live", path, exc)
        return None
    return {a: {"levels": m.levels, "coef": m.coef, "cutpoints": m.cutpoints} for a, m in model.arteries.items()}


def page_rules(ct: Volume, result: StudyResult) -> dict:
    """The rules the page's script applies (each from the module that defines it)."""
    bounds = [CALCIUM_THRESHOLD_HU, 200.0, 300.0, 400.0]
    return {
        "threshold_hu": CALCIUM_THRESHOLD_HU, "min_area_mm2": MIN_LESION_AREA_MM2,
        "ref_slice_mm": AGATSTON_REFERENCE_SLICE_MM,
        "weights": [[b, int(density_weights(np.array([b]))[0])] for b in bounds],
        "grow_radius_vox": [int(math.ceil(C.GROW_BOX_MM / float(s))) for s in ct.spacing_zyx],
        "grow_box_mm": C.GROW_BOX_MM, "snap_px": C.SNAP_PX, "calcium_ids": list(CALCIUM_IDS),
        "contrast": result.has_flag(F.CONTRAST_SUSPECTED),
        "stents": sorted({f.artery for f in result.flags if f.code == F.STENT_SUSPECTED and f.artery}),
        "study_not_assessable": any(f.code == F.NOT_ASSESSABLE and f.artery is None and f.severity == "invalid"
                                    for f in result.flags),
        "categories": list(CATEGORIES), "category_upper": list(CATEGORY_UPPER),
    }


def page_data(ct: Volume, labels: Volume, result: StudyResult, options: ReviewSettings, salt: str) -> dict:
    """Everything the page's script reads (the JSON block)."""
    study = result.study
    nz = ct.shape[0]
    flips = display_flips(ct)
    d = np.asarray(ct.direction).reshape(3, 3)
    lut, names = label_table()
    bundle, info = niivue_bundle()
    n = result.ct.get("instance_numbers") if result.ct else None
    p = result.ct.get("slice_positions_mm") if result.ct else None
    if not p or len(p) != nz:
        p = [round(float(ct.index_to_physical(np.array([[k, 0, 0]]))[0, 2]), 2) for k in range(nz)]
    return {
        "schema": "cacpipe.review-page/2", "study_uid": study.study_uid, "patient_id": page_patient_id(study.patient_id, options.anonymous_names, salt),
        "series_uid": study.series_uid, "file_id": anonymised_id(study.patient_id, salt),
        "storage": STORAGE, "columns": list(RATING_COLUMNS), "ratings": list(RATINGS), "arteries": list(ARTERIES),
        "corrections_schema": C.SCHEMA,
        "windows": {k: list(v) for k, v in WINDOWS.items()}, "window": list(options.window),
        "lut": lut, "label_names": names,
        "label_ids": {"artery": dict(ARTERY_ID), "calcium": dict(CALCIUM_ID), "selected": SELECTED_ID},
        "ct": {"shape_zyx": list(ct.shape), "spacing_zyx": list(ct.spacing_zyx),
               "instance_numbers": list(n) if n and len(n) == nz else [None] * nz,
               "slice_positions_mm": list(p),
               # radiological display: rows flipped when +y points anterior, columns when +x points to
               # patient right; superior up when +z (volume order) points to the head
               "flips": {"rows": flips[0], "cols": flips[1], "z_up": bool(d[2, 2] > 0)}},
        "result": {"status": result.status,
                   "arteries": {a: {k: getattr(r, k) for k in ("assessed", "agatston", "calcium_volume_mm3", "lesions",
                                                               "peak_hu", "grade", "agatston_valid")}
                                for a, r in result.arteries.items()},
                   "total": {k: getattr(result.total, k) for k in ("agatston", "calcium_volume_mm3", "lesions",
                                                                   "category", "cac_drs", "complete",
                                                                   "agatston_valid")},
                   "lesions": [les.to_dict() for les in result.lesions],
                   "flags": [{**f.to_dict(), "message": _shown_text(f.message, result, options, salt)}
                             for f in result.flags]},
        "rules": page_rules(ct, result),
        "severity": _severity_params(result),
        "viewer": "niivue" if bundle else "basic", "viewer_note": info.get("reason", ""),
        "niivue_version": info.get("version", ""),
        "scan_block": f"{CONTEXT_MM:g} mm",
        "volumes": page_volumes(ct, labels, result.lesions, options),
    }


def _shown_text(text: str, result: StudyResult, options: ReviewSettings, salt: str) -> str:
    """A flag message or reason as the page shows it: under ``review.anonymous_names`` the PatientID
    (a source folder named in a message) becomes the anonymised id."""
    return scrub(text, result.study.patient_id, salt) if options.anonymous_names else text


def _provenance(result: StudyResult) -> str:
    """The record's one provenance statement (research use, demo model, heart locator, model id)."""
    return "<strong>" + " &middot; ".join(E(s) for s in result.provenance().statements()) + "</strong>"


def study_page(ct: Volume, labels: Volume, result: StudyResult, summary_png, options: ReviewSettings,
               salt: str = "", prior: dict | None = None, study_dir=None) -> str:
    """The HTML text of one study's review page (``summary_png``: the summary image, its PNG bytes, or None;
    ``prior``: the study's prior.json (cacpipe.review.prior), shown beside the viewer, read from ``study_dir``)."""
    data = page_data(ct, labels, result, options, salt)
    prior_html = pane = ""
    if prior is not None:
        from .prior import prior_page_data, prior_pane, prior_section
        from .viewer_data import detail_box

        show_date = "study_date" in options.fields  # the page shows dates only when the site allows them
        data["prior"] = prior_page_data(prior, study_dir, ct, detail_box(labels, result.lesions, options), show_date)
        prior_html, pane = prior_section(prior, show_date), prior_pane()
    shown = display_items(result.study.to_dict(), options.fields, salt)
    head = " ".join(f"<span><b>{E(k)}:</b> {E(v)}</span>" for k, v in shown)
    tot = result.total
    banners = []
    if result.is_demo:
        banners.append("<div class=banner>Segmented with the phantom-trained demo model: NOT FOR CLINICAL USE.</div>")
    if result.status != "done":
        banners.append(f"<div class=banner>Study status: {E(result.status)} "
                       f"{E(_shown_text(result.reason, result, options, salt))}</div>")
    score_rows = []
    for a in ARTERIES:
        sw = f"<span class=sw style='background:{rgb(ARTERY_COLOURS[a])}'></span>"
        score_rows.append(
            f"<tr><th scope=row title='{E(ARTERY_LONG_NAMES[a])}'>{sw}{a}</th>"
            f"<td class=num id=score-{a}-agatston></td><td class=num id=score-{a}-volume></td>"
            f"<td class=num id=score-{a}-lesions></td><td id=score-{a}-grade></td>"
            f"<td><button type=button class=secondary id=na-{a} aria-pressed=false>not assessable</button></td></tr>")
    rating_rows = []
    for a in ARTERIES:
        radios = "".join(f"<label class=rate><input type=radio name='rating-{a}' value='{E(r)}'> {E(r)}</label>"
                         for r in RATINGS)
        rating_rows.append(f"<tr class=rate-row><th scope=row>{a}</th><td>{radios}<br>"
                           f"<input type=text id='comment-{a}' size=40 placeholder='comment (optional)' "
                           f"aria-label='comment on {a}'></td></tr>")
    flag_html = "".join(
        f"<div class='flag {E(f.severity)}'><b>{E(f.severity)}</b> {E(f.code)}"
        + (f" [{E(f.artery)}]" if f.artery else "") + f": {E(_shown_text(f.message, result, options, salt))}</div>"
        for f in result.flags) or "<p class=muted>No flags.</p>"
    legend = "".join(f"<span><span class=sw style='background:{rgb(ARTERY_COLOURS[a])}'></span>{a}</span>"
                     for a in ARTERIES)
    legend += (f"<span><span class=sw style='background:{rgb(CALCIUM_COLOUR)}'></span>calcium</span>"
               f"<span><span class=sw style='background:{rgb(SELECTED_COLOUR)}'></span>selected lesion</span>")
    summary = (f"<h2>Summary (thick-slab MIP)</h2><img class=summary alt='summary: thick-slab maximum intensity "
               f"projections with the labels' src='{png_data_uri(summary_png)}'>") if summary_png is not None else ""
    win_buttons = "".join(
        f"<button type=button class=secondary data-window={k} title='W {w:g} / L {lv:g} (key {i + 1})'>"
        f"{k.capitalize()}</button>" for i, (k, (lv, w)) in enumerate(WINDOWS.items()))
    bundle, info = niivue_bundle()
    scripts = [inline_script(static_text(s), s) for s in SCRIPTS + (("prior.js",) if prior is not None else ())]
    vendor = inline_script(bundle, "NiiVue") if bundle else ""
    no_lesions = "No calcified lesions found."
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cacpipe review</title><style>{static_text("review.css")}</style></head>
<body>
<header><h1>cacpipe review</h1>{head}<span class=status>status: {E(result.status)}</span>
<span id=head-total>Total Agatston {_num(tot.agatston)} &middot; {_num(tot.calcium_volume_mm3)} mm&sup3; &middot; {E(str(tot.category or ''))} {E(str(tot.cac_drs or ''))}</span>
<span class=muted>{_provenance(result)}</span></header>
{''.join(banners)}
<main class=study>
<section aria-label="images">
<div class=toolbar role=toolbar aria-label="viewer controls">
 <div class=group><span>Series</span><button type=button class=secondary data-series=heart aria-pressed=true title="full resolution over the heart region (key h toggles)">Heart</button><button type=button class=secondary data-series=scan aria-pressed=false title="the whole scored series, {CONTEXT_MM:g} mm blocks">Whole scan</button></div>
 <div class=group><span>View</span><button type=button class=secondary data-view=axial aria-pressed=true title="key a">Axial</button><button type=button class=secondary data-view=coronal aria-pressed=false title="key c">Coronal</button><button type=button class=secondary data-view=sagittal aria-pressed=false title="key s">Sagittal</button><button type=button class=secondary data-view=mpr aria-pressed=false title="three planes (NiiVue; key m)">MPR</button></div>
 <div class=group><span>Window</span>{win_buttons}<label>W <input type=number id=win-width step=10 min=1 aria-label="window width HU"></label><label>L <input type=number id=win-level step=10 aria-label="window level HU"></label></div>
 <div class=group><span>Zoom</span><button type=button class=secondary id=zoom-out aria-label="zoom out">&minus;</button><button type=button class=secondary id=zoom-in aria-label="zoom in">+</button><button type=button class=secondary id=zoom-reset>Reset</button>
 <label>Left drag <select id=mouse-mode><option value=crosshair>crosshair</option><option value=pan>pan (wheel zooms)</option><option value=window>window/level</option></select></label></div>
 <div class=group><label><input type=checkbox id=overlay-toggle checked> overlay (o)</label><label><input type=checkbox id=crosshair-toggle checked> crosshair (x)</label><label>opacity <input type=range id=overlay-opacity min=0 max=100 value=80 aria-label="overlay opacity"></label></div>
</div>
{"<div class=with-prior>" if pane else ""}<div class=viewport id=viewport></div>{pane + "</div>" if pane else ""}
<div class=slicebar><button type=button class=secondary id=prev title="previous slice (ArrowUp / k)" aria-label="previous slice">&#9650;</button>
<input type=range id=slice-range min=0 max=0 value=0 aria-label="slice"><button type=button class=secondary id=next title="next slice (ArrowDown / j)" aria-label="next slice">&#9660;</button>
<span id=slice-info class=muted></span></div>
<div id=readout aria-live=polite></div>
<div class="legend muted">{legend}</div>
<p id=viewer-note class=muted></p>
<p class=help>Scroll: mouse wheel, <kbd>&uarr;</kbd>/<kbd>&darr;</kbd>, <kbd>j</kbd>/<kbd>k</kbd>, <kbd>PgUp</kbd>/<kbd>PgDn</kbd> or the slider.
Windows: <kbd>1</kbd> calcium, <kbd>2</kbd> mediastinum, <kbd>3</kbd> lung; right-drag changes window/level.
Views: <kbd>a</kbd> <kbd>c</kbd> <kbd>s</kbd> <kbd>m</kbd>; zoom <kbd>+</kbd>/<kbd>-</kbd>/<kbd>0</kbd> (or Ctrl+wheel); lesions <kbd>n</kbd>/<kbd>p</kbd>; overlay <kbd>o</kbd>; crosshair <kbd>x</kbd>; whole scan <kbd>h</kbd>.
Radiological display: patient right on the image left. Slices are named as in PACS (image = InstanceNumber).</p>
{summary}
</section>
<section aria-label="findings">
<div class=controls><label>Reader <input type=text id=rater size=16 placeholder="your name or initials" autocomplete=off></label>
<span class=muted>ratings and corrections are kept per reader in this browser</span></div>
<h2>Scores</h2>
<table class=scores><thead><tr><th>artery</th><th class=num>Agatston</th><th class=num>calcium mm&sup3;</th><th class=num>lesions</th><th>grade</th><th>reader</th></tr></thead>
<tbody>{''.join(score_rows)}
<tr><th scope=row class=total>Total</th><td class="num total" id=score-total-agatston></td><td class="num total" id=score-total-volume></td><td class="num total" id=score-total-lesions></td><td class=total></td><td class=total></td></tr>
<tr><th scope=row>category</th><td colspan=5 id=score-category></td></tr>
<tr><th scope=row>CAC-DRS</th><td colspan=5 id=score-cacdrs></td></tr></tbody></table>
<p class=muted>Numbers update as you correct; <code>cacpipe review apply</code> recomputes them with the pipeline's code. Reason for "not assessable": <input type=text id=na-reason size=24 placeholder="e.g. motion" aria-label="reason for not assessable"></p>
{prior_html}
<h2>Lesions</h2>
<p id=no-lesions class=muted>{no_lesions}</p>
<table id=lesion-table><thead><tr><th>lesion</th><th>artery</th><th>slices</th><th class=num title='peak HU'>peak</th><th class=num title='largest cross-section, mm&sup2;'>area</th><th class=num title='volume, mm&sup3;'>mm&sup3;</th><th class=num>Agatston</th><th>flags</th><th><span class=muted>actions</span></th></tr></thead>
<tbody id=lesion-body></tbody></table>
<div class=controls>Mark a missed lesion:
<button type=button class=secondary id=add-RCA aria-pressed=false>RCA</button><button type=button class=secondary id=add-LAD aria-pressed=false>LAD</button><button type=button class=secondary id=add-LCX aria-pressed=false>LCX</button>
<span id=pick-status class=muted aria-live=polite></span></div>
<h2>Corrections</h2>
<ul id=changes></ul>
<div class=controls><button type=button id=download-corrections disabled>Download corrections (JSON)</button><button type=button class=secondary id=clear-corrections>Undo all</button></div>
<p id=correction-status class=muted aria-live=polite></p>
<h2>Rating</h2>
<table><tbody>{''.join(rating_rows)}</tbody></table>
<div class=controls><button type=button id=download-csv>Download ratings CSV</button><span id=rate-status class=muted></span></div>
<p class=muted>Ratings use the paper's scale; the CSV columns are {', '.join(RATING_COLUMNS)} (read by <code>cacpipe evaluate --ratings</code>).</p>
<h2>Flags</h2>{flag_html}
</section></main>
<script type="application/json" id="review-data">{script_json(data)}</script>
{vendor}
{''.join(scripts)}
</body></html>
"""
