"""The model card: what data, plan, trainer and validation numbers stand behind a trained model.

``make train`` writes two files into the model folder (``<trainer>__<plans>__<configuration>/``),
so they travel inside the exported zip:

- ``cacpipe_model_card.json`` (schema ``cacpipe.model_card/1``): training data summary (cases,
  patients, scanners, slice thicknesses, contrast; counts only, no patient or case ids), plan and
  trainer (spacing, patch, network, mirroring axes of every fold's checkpoint), folds, the
  cross-validation summary, software versions, date, intended use, lineage (the cards of the
  models it was fine-tuned from) and the SHA-256 of dataset.json, plans.json and every fold's
  checkpoint, which binds the card to these weights;
- ``MODEL_CARD.md``: the same for people.

The card's ``id`` is the first 16 hex digits of the SHA-256 of the card's canonical JSON
without the ``id`` key: any change to the card (or, through the file digests, to the weights)
changes it. ``cacpipe models install`` refuses a card whose id or file digests do not match;
``InstalledModel.card_id`` names it in every result.json (``pipeline.model.card_id``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import ModelMismatchError

CARD_JSON = "cacpipe_model_card.json"
CARD_MD = "MODEL_CARD.md"
CARD_SCHEMA = "cacpipe.model_card/1"
CHECKPOINT = "checkpoint_final.pth"  # every fold's trained weights (nnU-Net's name)
ARTERY_SCOPES = ("RCA", "LAD", "LCX", "any")


def card_id(card: dict) -> str:
    """The id of a card: SHA-256 (16 hex digits) of its canonical JSON without ``id``."""
    body = {k: v for k, v in card.items() if k != "id"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def model_files(folder: str | Path, folds) -> list[str]:
    """The files a card binds, relative to the model folder."""
    return ["dataset.json", "plans.json", *(f"fold_{f}/{CHECKPOINT}" for f in sorted(folds))]


def file_digests(folder: str | Path, folds) -> dict[str, str]:
    folder = Path(folder)
    return {rel: file_sha256(folder / rel) for rel in model_files(folder, folds)}


def read_card(folder: str | Path) -> dict | None:
    """The card JSON of a model folder, None when it has none; an unreadable card is an error."""
    p = Path(folder) / CARD_JSON
    if not p.exists():
        return None
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelMismatchError(f"model card {p} is not readable JSON ({exc})") from exc
    if not isinstance(card, dict) or card.get("schema") != CARD_SCHEMA:
        raise ModelMismatchError(f"model card {p}: schema {card.get('schema') if isinstance(card, dict) else None!r} "
                                 f"is not {CARD_SCHEMA!r}")
    return card


def verify_card(folder: str | Path, card: dict, folds) -> list[str]:
    """Problems of a card against its model folder (empty when it belongs to these weights).

    Checks the id against the content, the model name (``DatasetX/<trainer>__<plans>__<cfg>``)
    against the folder, the folds, and the SHA-256 of every bound file.
    """
    folder = Path(folder)
    problems = []
    if card.get("id") != card_id(card):
        problems.append(f"its id {card.get('id')!r} does not match its content ({card_id(card)}): the card was edited")
    model = card.get("model") or {}
    name = f"{folder.parent.name}/{folder.name}"
    if model.get("name") != name:
        problems.append(f"it describes model {model.get('name')!r}, not {name!r}")
    if sorted(model.get("folds") or []) != sorted(folds):
        problems.append(f"it lists folds {model.get('folds')}, the model has {sorted(folds)}")
    digests = card.get("files") or {}
    for rel in model_files(folder, folds):
        if rel not in digests:
            problems.append(f"it has no digest of {rel}")
        elif (folder / rel).exists() and file_sha256(folder / rel) != digests[rel]:
            problems.append(f"{rel} is not the file it was written for (SHA-256 differs)")
    return problems


def finish(card: dict) -> dict:
    """The card with its ``id`` set (first key after ``schema``)."""
    body = {k: v for k, v in card.items() if k not in ("schema", "id")}
    out = {"schema": CARD_SCHEMA, "id": ""}
    out.update(body)
    out["id"] = card_id(out)
    return out


def write_card(folder: str | Path, card: dict) -> dict:
    """Write ``card`` (id set here) as JSON and markdown into the model folder; returns the card."""
    card = finish(card)
    folder = Path(folder)
    (folder / CARD_JSON).write_text(json.dumps(card, indent=2), encoding="utf-8")
    (folder / CARD_MD).write_text(render_markdown(card), encoding="utf-8")
    return card


# --- showing a card ---------------------------------------------------------------------------
def _f(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _counts(d: dict | None) -> str:
    return ", ".join(f"{k} ({v})" for k, v in (d or {}).items()) or "none"


def _axes(m: dict) -> str:
    """'0: 0,1 | 1: 0,1 (left-right = network axis 2)' and a warning when a fold mirrored left-right."""
    per = "; ".join(f"fold {f}: {'none' if a is None else ','.join(map(str, a))}"
                    for f, a in (m.get("mirroring_axes") or {}).items())
    text = f"{per} (left-right = network axis {m.get('left_right_network_axis')})"
    if m.get("left_right_mirrored"):
        text += " - WARNING: trained with left-right mirroring, it may confuse the RCA with the LCX"
    return text


def _contrast(d: dict | None) -> str:
    d = d or {}
    text = f"{d.get('non_contrast', 0)} non-contrast, {d.get('contrast', 0)} contrast"
    return text + (f", {d['unknown']} unknown" if d.get("unknown") else "")


def presence_line(cv: dict, scope: str) -> str:
    p = (cv.get("presence") or {}).get(scope) or {}
    return (f"{scope}: sensitivity {_f(p.get('sensitivity'))}, specificity {_f(p.get('specificity'))}, "
            f"PPV {_f(p.get('ppv'))}, NPV {_f(p.get('npv'))}, kappa {_f(p.get('kappa'))}")


# The install gate's floors on a card's cross-validation (``cacpipe models install`` refuses a model
# below any of them unless --accept-weak-model): per-artery presence kappa 0.40 ("moderate"
# agreement, Landis & Koch), total Agatston ICC 0.50, mean nnU-Net validation Dice 0.20. A model
# that misses them is not a scoring model: its per-artery calls are little better than chance.
FLOOR_KAPPA = 0.40
FLOOR_ICC = 0.50
FLOOR_DICE = 0.20


def weak_points(card: dict | None) -> list[str]:
    """Where a card's cross-validation is below the install floors (empty: none, or no CV recorded)."""
    cv = (card or {}).get("cross_validation")
    if not cv:
        return []
    out = []
    for a in ("RCA", "LAD", "LCX"):
        k = ((cv.get("presence") or {}).get(a) or {}).get("kappa")
        if k is None or k < FLOOR_KAPPA:
            out.append(f"{a} presence kappa {_f(k)} < {FLOOR_KAPPA:.2f}")
    icc = ((cv.get("agatston") or {}).get("total") or {}).get("icc")
    if icc is None or icc < FLOOR_ICC:
        bias = ((cv.get("agatston") or {}).get("total") or {}).get("bias")
        out.append(f"total Agatston ICC {_f(icc)} < {FLOOR_ICC:.2f}" + ("" if bias is None else f" (bias {bias:+.1f})"))
    dice = (cv.get("dice_nnunet") or {}).get("mean")
    if dice is not None and dice < FLOOR_DICE:
        out.append(f"mean nnU-Net Dice {_f(dice)} < {FLOOR_DICE:.2f}")
    return out


def headline(card: dict | None) -> str:
    """One line for ``cacpipe models list``: per-artery kappa and the total Agatston ICC first."""
    if card is None:
        return "no model card"
    data = card.get("training_data") or {}
    cv = card.get("cross_validation")
    parts = [f"card {card.get('id')}", f"{data.get('cases_used', '?')} cases / {data.get('patients', '?')} patients"]
    if cv:
        pres = cv.get("presence") or {}
        icc = ((cv.get("agatston") or {}).get("total") or {}).get("icc")
        parts.append("CV kappa " + " ".join(f"{a} {_f((pres.get(a) or {}).get('kappa'))}" for a in ("RCA", "LAD", "LCX"))
                     + f", total Agatston ICC {_f(icc)}")
        if weak_points(card):
            parts.append("BELOW THE INSTALL FLOOR: " + ", ".join(weak_points(card)))
    else:
        parts.append("not cross-validated")
    if card.get("lineage"):
        parts.append(f"fine-tuned from card {card['lineage'][0].get('card_id') or 'none'}")
    if card.get("not_for_clinical_use"):
        parts.append("NOT FOR CLINICAL USE")
    return "; ".join(parts)


def summary_lines(card: dict | None) -> list[str]:
    """A few lines for ``cacpipe models install`` / ``show``."""
    if card is None:
        return ["no model card (a model not made by `make train`, or the shipped demo model): nothing records "
                "its training data or validation"]
    data = card.get("training_data") or {}
    m = card.get("model") or {}
    sw = card.get("software") or {}
    contrast = data.get("contrast")
    lines = [
        f"model card {card.get('id')} (created {card.get('created', '?')}, cacpipe {sw.get('cacpipe', '?')}, "
        f"nnU-Net {sw.get('nnunetv2', '?')})",
        f"  trained on {data.get('cases_used', '?')} cases of {data.get('patients', '?')} patients; "
        f"{_contrast(contrast)}",
        f"  scanners: {_counts(data.get('scanners'))}",
        f"  slice thickness: {_counts(data.get('slice_thickness_mm'))}",
        f"  plan {m.get('configuration')} (spacing {' x '.join(f'{v:g}' for v in m.get('spacing_zyx') or [])} mm, "
        f"patch {' x '.join(map(str, m.get('patch_size_zyx') or []))}), trainer {m.get('trainer')}",
        f"  test-time mirroring axes: {_axes(m)}",
    ]
    cv = card.get("cross_validation")
    if cv:
        lines.append(f"  {len(cv.get('folds') or [])}-fold cross-validation on {cv.get('cases')} cases "
                     f"(through the scan pipeline):")
        lines += [f"    {presence_line(cv, s)}" for s in ARTERY_SCOPES]
        tot = (cv.get("agatston") or {}).get("total") or {}
        lines.append(f"    total Agatston: ICC {_f(tot.get('icc'))}, bias {_f(tot.get('bias'), 1)} "
                     f"(limits {_f(tot.get('loa_low'), 1)} to {_f(tot.get('loa_high'), 1)}), n {tot.get('n')}")
        dice = cv.get("dice_nnunet") or {}
        if dice:
            lines.append("    nnU-Net Dice: " + ", ".join(f"{k} {_f(v)}" for k, v in dice.items()))
    else:
        lines.append("  not cross-validated")
    for i, p in enumerate(card.get("lineage") or []):
        lines.append(f"  {'fine-tuned from' if i == 0 else 'which came from'} {p.get('model_name')} "
                     f"(card {p.get('card_id') or 'none'})")
    lines.append(f"  intended use: {card.get('intended_use', '?')}")
    return lines


def render_markdown(card: dict) -> str:
    """MODEL_CARD.md: the card for people (the JSON is the source of truth)."""
    m = card.get("model") or {}
    data = card.get("training_data") or {}
    cv = card.get("cross_validation")
    sw = card.get("software") or {}
    out = [f"# Model card: {m.get('name')}", "",
           f"Card id `{card.get('id')}`, created {card.get('created')}. The JSON next to this file "
           f"(`{CARD_JSON}`) is the source of truth.", ""]
    if card.get("not_for_clinical_use"):
        out += ["**NOT FOR CLINICAL USE.**", ""]
    out += ["## Intended use", "", str(card.get("intended_use", "")), "",
            "## Training data", "",
            f"- cases: {data.get('cases_used')} used of {data.get('cases_listed')} listed "
            f"({data.get('cases_skipped', 0)} left out after failing the checks)",
            f"- patients: {data.get('patients')}",
            f"- sources: {_counts(data.get('input_kinds'))}",
            f"- scanners: {_counts(data.get('scanners'))}",
            f"- slice thickness (DICOM tag): {_counts(data.get('slice_thickness_mm'))}",
            f"- slice spacing: {_counts(data.get('slice_spacing_mm'))}",
            f"- contrast: {_contrast(data.get('contrast'))}",
            f"- cases without calcium: {data.get('calcium_free_cases')}",
            f"- heart crop (stage 1) of training cases: {_counts(data.get('heart_method'))}", "",
            "## Plan and trainer", "",
            f"- configuration `{m.get('configuration')}` of `{m.get('plans')}`, trainer `{m.get('trainer')}`",
            f"- spacing {m.get('spacing_zyx')} mm (z, y, x), patch {m.get('patch_size_zyx')}, batch {m.get('batch_size')}",
            f"- network: {m.get('network', {}).get('class')}, {m.get('network', {}).get('parameters')} parameters, "
            f"features {m.get('network', {}).get('features_per_stage')}",
            f"- run: {m.get('run')}",
            f"- test-time mirroring axes allowed by each fold's checkpoint (= the axes it was trained mirrored "
            f"on): {_axes(m)}", "",
            "## Folds", "",
            f"{card.get('folds', {}).get('n_splits')} splits grouped by patient; trained folds "
            f"{card.get('folds', {}).get('trained')}; validation cases per fold "
            f"{card.get('folds', {}).get('val_cases')}.", "",
            "## Cross-validation", ""]
    if cv:
        out += [str(cv.get("method", "")), "", "| scope | TP | FP | FN | TN | sensitivity | specificity | PPV | NPV | kappa |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for s in ARTERY_SCOPES:
            p = (cv.get("presence") or {}).get(s) or {}
            out.append(f"| {s} | {p.get('tp')} | {p.get('fp')} | {p.get('fn')} | {p.get('tn')} | "
                       f"{_f(p.get('sensitivity'))} | {_f(p.get('specificity'))} | {_f(p.get('ppv'))} | "
                       f"{_f(p.get('npv'))} | {_f(p.get('kappa'))} |")
        out += ["", "| Agatston | n | ICC(A,1) | bias | limits of agreement |", "|---|---|---|---|---|"]
        for s, a in (cv.get("agatston") or {}).items():
            out.append(f"| {s} | {a.get('n')} | {_f(a.get('icc'))} | {_f(a.get('bias'), 1)} | "
                       f"{_f(a.get('loa_low'), 1)} to {_f(a.get('loa_high'), 1)} |")
        if cv.get("category"):
            c = cv["category"]
            out += ["", f"Agatston category: exact agreement {_f(c.get('exact_agreement'))} (n {c.get('n')}), "
                        f"linear-weighted kappa {_f(c.get('kappa_linear'))}."]
        if cv.get("dice_nnunet"):
            out += ["", "nnU-Net validation Dice per region (crop grid): "
                    + ", ".join(f"{k} {_f(v)}" for k, v in cv["dice_nnunet"].items()) + "."]
        if cv.get("not_assessed"):
            out += ["", f"Studies with an artery not assessed: {cv['not_assessed']}."]
    else:
        out.append("Not cross-validated.")
    out += ["", "## Lineage", ""]
    if card.get("lineage"):
        out += [f"- {p.get('model_name')} (card `{p.get('card_id') or 'none'}`, {p.get('source', '')})"
                for p in card["lineage"]]
        init = card.get("init") or {}
        out.append(f"- fold initialisation (new fold: parent fold): {init.get('fold_map')}")
    else:
        out.append("Trained from scratch.")
    out += ["", "## Software", "", ", ".join(f"{k} {v}" for k, v in sw.items()), "",
            "## Files bound to this card (SHA-256)", ""]
    out += [f"- `{k}` {v}" for k, v in (card.get("files") or {}).items()]
    return "\n".join(out) + "\n"
