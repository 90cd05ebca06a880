"""Overlay images for review: lesion slices, a thick-slab MIP summary and a fold-agreement heat map.

Rendering is plain numpy + Pillow (no matplotlib) so a study renders in well under a second.
Display convention: radiological (patient right on the image left, anterior at the top),
derived from the volume's direction cosines. Colours come only from ``cacpipe.labels``.

What is drawn is what is counted: calcium is drawn where a calcium label holds HU >= 130 (the
voxels the Agatston score, the volume and the lesions count; :func:`display_labels`), and the rest
of a calcium label as its artery. Every image carries the result's provenance statement burned in
at the top (:func:`statement_banner`) and names slices as PACS does (InstanceNumber, table position).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ..config import ReviewSettings
from ..files import make_private_dir, protect
from ..labels import ARTERIES, ARTERY_COLOURS, ARTERY_ID, CALCIUM_COLOUR, CALCIUM_ID, LABEL_CLASSES
from ..morph import label_objects
from ..quant.lesions import Lesion
from ..record import StudyResult
from ..units import CALCIUM_THRESHOLD_HU
from ..volume import Volume
from .options import display_items

ARTERY_ALPHA = 0.45
CALCIUM_ALPHA = 0.90
HEADER_BG = (24, 24, 28)
TEXT = (235, 235, 235)
MUTED = (170, 170, 170)
STATEMENT_BG = (120, 0, 0)  # the provenance banner: white on dark red, above everything else
STATEMENT_TEXT = (255, 255, 255)
STATEMENT_FONT_SIZE = 14
STATEMENT_LINE_PX = 18


@lru_cache(maxsize=8)
def font(size: int = 14) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def display_labels(ct: Volume, labels: Volume) -> Volume:
    """The label map as drawn: calcium-label voxels below 130 HU become their artery's label, so the
    calcium drawn is exactly the calcium counted (HU >= 130 inside a calcium label)."""
    lab = np.asarray(labels.array)
    hu = np.asarray(ct.array)
    # Only each calcium class's box is looked at (a few cm of a scan of hundreds of slices), and
    # the map is copied only when a voxel changes (post-processing already relabels sub-threshold
    # calcium, so usually none does).
    boxes = label_objects(lab, max_label=max(CALCIUM_ID.values())) if lab.dtype.kind in "iu" else None
    out = None
    for a in ARTERIES:
        box = (slice(None),) * 3 if boxes is None else boxes[CALCIUM_ID[a] - 1]
        if box is None:
            continue
        low = (lab[box] == CALCIUM_ID[a]) & (hu[box] < CALCIUM_THRESHOLD_HU)
        if low.any():
            out = lab.copy() if out is None else out
            out[box][low] = ARTERY_ID[a]
    return labels.with_array(lab if out is None else out)  # unchanged: the same voxels, not copied


def statement_lines(statements: list[str], width: int, size: int = STATEMENT_FONT_SIZE) -> list[str]:
    """The statements joined with ' | ' into as few lines as fit ``width`` pixels (a statement is never split)."""
    f = font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for st in statements:
        if lines and probe.textlength(lines[-1] + " | " + st, font=f) <= width - 16:
            lines[-1] += " | " + st
        else:
            lines.append(st)
    return lines


def statement_banner(width: int, result: StudyResult) -> Image.Image:
    """The provenance banner burned into every image: research use only, demo model, fallback heart
    locator, unfitted severity model (when they apply), model and cacpipe version."""
    lines = statement_lines(result.provenance().statements(), width)
    img = Image.new("RGB", (width, 6 + STATEMENT_LINE_PX * len(lines)), STATEMENT_BG)
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        d.text((8, 3 + STATEMENT_LINE_PX * i), line, fill=STATEMENT_TEXT, font=font(STATEMENT_FONT_SIZE))
    return img


def crop_box(labels: Volume, options: ReviewSettings) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a square around all labelled voxels plus a margin; whole slice if none."""
    _, ny, nx = labels.shape
    if not options.zoom_to_heart or not labels.array.any():
        return 0, ny, 0, nx
    proj = labels.array.any(axis=0)
    ys, xs = np.nonzero(proj)
    dy, dx = labels.spacing_zyx[1], labels.spacing_zyx[2]
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half_mm = max((ys.max() - ys.min()) * dy, (xs.max() - xs.min()) * dx) / 2 + options.margin_mm
    hy, hx = int(np.ceil(half_mm / dy)), int(np.ceil(half_mm / dx))
    y0, x0 = max(0, int(cy) - hy), max(0, int(cx) - hx)
    return y0, min(ny, int(cy) + hy + 1), x0, min(nx, int(cx) + hx + 1)


def display_flips(vol: Volume) -> tuple[bool, bool]:
    """(flip_rows, flip_cols) that bring a (y, x) slice to radiological display."""
    d = np.asarray(vol.direction).reshape(3, 3)
    # column 0 = direction of +x voxel axis; radiological display wants +x pointing to patient left (+L)
    return bool(d[1, 1] < 0), bool(d[0, 0] < 0)


def _orient(a: np.ndarray, flips: tuple[bool, bool]) -> np.ndarray:
    if flips[0]:
        a = a[::-1]
    if flips[1]:
        a = a[:, ::-1]
    return a


def to_grey(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU -> uint8 with (level, width)."""
    level, width = window
    g = (hu.astype(np.float32) - (level - width / 2)) / width
    return (np.clip(g, 0, 1) * 255).astype(np.uint8)


def label_rgba(lab2d: np.ndarray) -> np.ndarray:
    """(y, x, 4) uint8: artery classes half transparent, calcium nearly opaque, background clear."""
    out = np.zeros(lab2d.shape + (4,), dtype=np.uint8)
    for c in LABEL_CLASSES:
        sel = lab2d == c.id
        out[sel, :3] = c.colour
        out[sel, 3] = int(255 * (CALCIUM_ALPHA if c.is_calcium else ARTERY_ALPHA))
    return out


def blend(grey: Image.Image, rgba: Image.Image) -> Image.Image:
    base = grey.convert("RGBA")
    return Image.alpha_composite(base, rgba).convert("RGB")


def _scale_for(box_h: int, box_w: int, target: int) -> float:
    return target / max(box_h, box_w)


def _upscale(img: Image.Image, scale: float, smooth: bool) -> Image.Image:
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST)


def _calcium_outline(lab_up: np.ndarray) -> np.ndarray:
    """A 2-pixel ring just outside the calcium: marks small lesions without hiding their pixels."""
    calc = np.isin(lab_up, [CALCIUM_ID[a] for a in ARTERIES])
    return ndimage.binary_dilation(calc, iterations=2) & ~calc


def _orientation_marks(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
    f = font(13)
    draw.text((6, h // 2 - 8), "R", fill=(255, 255, 0), font=f)
    draw.text((w - 14, h // 2 - 8), "L", fill=(255, 255, 0), font=f)
    draw.text((w // 2 - 4, 4), "A", fill=(255, 255, 0), font=f)


@dataclass
class SliceView:
    """One rendered lesion slice."""

    k: int  # 0-based volume index (inferior -> superior); readers see ``ref``
    z_mm: float
    lesions: list[Lesion]
    ref: str  # how PACS names the slice: "image 42 (z -123.5 mm)"
    composite: Image.Image  # plain | overlay (| heat map) with header and legend
    file: str = ""


@dataclass
class OverlaySet:
    lesions: list[Lesion]
    box: tuple[int, int, int, int]
    flips: tuple[bool, bool]
    slices: list[SliceView] = field(default_factory=list)
    summary: Image.Image | None = None
    skipped_slices: list[int] = field(default_factory=list)


def _fmt(v, nd=1, unit="") -> str:
    return "n/a" if v is None else f"{v:.{nd}f}{unit}"


def artery_lines(result: StudyResult) -> list[tuple[str, str]]:
    """(artery, text) per artery for legends: Agatston, volume, lesions, grade (only from a severity model
    fitted on local grades); 'not assessed' explicit."""
    lines = []
    show_grade = result.severity_fitted is True
    for a in ARTERIES:
        r = result.arteries[a]
        if not r.assessed:
            lines.append((a, f"{a}: NOT ASSESSED"))
            continue
        grade = f"  grade {r.grade or 'n/a'}" if show_grade else ""
        lines.append((a, f"{a}: Agatston {_fmt(r.agatston)}  vol {_fmt(r.calcium_volume_mm3)} mm3  "
                         f"lesions {r.lesions if r.lesions is not None else 'n/a'}{grade}"))
    tot = result.total
    if tot.category is not None:
        score = f"category {tot.category}  CAC-DRS {tot.cac_drs}"
    else:
        score = "no category: " + ("not every artery assessed" if not tot.complete else "score not valid, see flags")
    lines.append(("", f"Total: Agatston {_fmt(tot.agatston)}  vol {_fmt(tot.calcium_volume_mm3)} mm3  "
                      f"lesions {tot.lesions if tot.lesions is not None else 'n/a'}  {score}"))
    return lines


def _header(width: int, shown: list[tuple[str, str]], right: str) -> Image.Image:
    img = Image.new("RGB", (width, 26), HEADER_BG)
    d = ImageDraw.Draw(img)
    left = "   ".join(f"{k}: {v}" for k, v in shown)
    d.text((8, 5), left, fill=TEXT, font=font(14))
    tw = d.textlength(right, font=font(14))
    d.text((width - tw - 8, 5), right, fill=MUTED, font=font(14))
    return img


def _legend(width: int, result: StudyResult, extra: str = "") -> Image.Image:
    lines = artery_lines(result)
    h = 30 + 18 * len(lines) + (18 if extra else 0)
    img = Image.new("RGB", (width, h), HEADER_BG)
    d = ImageDraw.Draw(img)
    x = 8
    for name, colour in [*[(a, ARTERY_COLOURS[a]) for a in ARTERIES], ("calcium", CALCIUM_COLOUR)]:
        d.rectangle([x, 8, x + 14, 22], fill=colour, outline=(255, 255, 255))
        d.text((x + 20, 7), name, fill=TEXT, font=font(14))
        x += 30 + int(d.textlength(name, font=font(14))) + 10
    y = 30
    for artery, text in lines:
        d.text((8, y), text, fill=ARTERY_COLOURS.get(artery, TEXT), font=font(14))
        y += 18
    if extra:
        d.text((8, y), extra, fill=MUTED, font=font(13))
    return img


def _stack(rows: list[Image.Image]) -> Image.Image:
    w = max(r.width for r in rows)
    out = Image.new("RGB", (w, sum(r.height for r in rows)), HEADER_BG)
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height
    return out


def _side_by_side(panels: list[Image.Image], gap: int = 4) -> Image.Image:
    h = max(p.height for p in panels)
    out = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), h), HEADER_BG)
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out


def agreement_colours(a: np.ndarray) -> np.ndarray:
    """Agreement 0..1 -> RGB: red (folds disagree) -> yellow -> green (all folds agree)."""
    a = np.clip(a, 0, 1)[..., None]
    red, yellow, green = np.array([220, 30, 30]), np.array([250, 220, 0]), np.array([0, 200, 60])
    lo = red + (yellow - red) * (a / 0.5)
    hi = yellow + (green - yellow) * ((a - 0.5) / 0.5)
    return np.where(a < 0.5, lo, hi).astype(np.uint8)


def render_slice_panels(ct2d, lab2d, box, flips, options, lesions_here, agreement2d=None):
    """(plain, overlay, heat|None) display panels of one slice, cropped, oriented and upscaled."""
    y0, y1, x0, x1 = box
    hu = _orient(ct2d[y0:y1, x0:x1], flips)
    lab = _orient(lab2d[y0:y1, x0:x1], flips)
    scale = _scale_for(y1 - y0, x1 - x0, options.display_px)
    grey = _upscale(Image.fromarray(to_grey(hu, options.window)), scale, smooth=True)
    plain = grey.convert("RGB")
    lab_up = np.asarray(_upscale(Image.fromarray(lab.astype(np.uint8)), scale, smooth=False))
    rgba = label_rgba(lab_up)
    outline = _calcium_outline(lab_up)
    rgba[outline] = (255, 255, 255, 255)  # white rim: calcium stays visible on any background
    overlay = blend(grey, Image.fromarray(rgba, "RGBA"))
    d = ImageDraw.Draw(overlay)
    for les in lesions_here:
        cy, cx = les.centre_yx
        cy, cx = cy - y0, cx - x0
        if flips[0]:
            cy = (y1 - y0 - 1) - cy
        if flips[1]:
            cx = (x1 - x0 - 1) - cx
        cy, cx = (cy + 0.5) * scale, (cx + 0.5) * scale
        r = (les.radius_px + 3) * scale
        col = ARTERY_COLOURS[les.artery]
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=col, width=2)
        d.text((cx + r + 3, cy - r - 2), les.name, fill=col, font=font(14), stroke_width=2, stroke_fill=(0, 0, 0))
    for p in (plain, overlay):
        _orientation_marks(ImageDraw.Draw(p), p.width, p.height)
    heat = None
    if agreement2d is not None:
        ag = _orient(agreement2d[y0:y1, x0:x1], flips).astype(np.float32)
        ag_up = np.asarray(_upscale(Image.fromarray(ag, "F"), scale, smooth=False))
        rgb = np.asarray(plain).copy()
        sel = ag_up > 0.02
        rgb[sel] = (0.35 * rgb[sel] + 0.65 * agreement_colours(ag_up[sel])).astype(np.uint8)
        heat = Image.fromarray(rgb)
        hd_ = ImageDraw.Draw(heat)
        bar = agreement_colours(np.linspace(0, 1, 120))[None].repeat(10, axis=0)
        bx, by = heat.width - 140, heat.height - 20
        heat.paste(Image.fromarray(bar), (bx, by))
        hd_.text((bx, by - 18), "share of folds agreeing", fill=TEXT, font=font(12))
        hd_.text((bx - 12, by - 3), "0", fill=TEXT, font=font(12))
        hd_.text((bx + 124, by - 3), "1", fill=TEXT, font=font(12))
    return plain, overlay, heat


def _panel_titles(panels: list[Image.Image], titles: list[str]) -> list[Image.Image]:
    out = []
    for p, t in zip(panels, titles, strict=True):
        bar = Image.new("RGB", (p.width, 20), HEADER_BG)
        ImageDraw.Draw(bar).text((6, 2), t, fill=MUTED, font=font(13))
        out.append(_stack([bar, p]))
    return out


def _z_mm(vol: Volume, k: int) -> float:
    return float(vol.index_to_physical(np.array([[k, 0, 0]]))[0, 2])


def _agreement_array(agreement, ct: Volume) -> np.ndarray | None:
    if agreement is None:
        return None
    arr = agreement.array if isinstance(agreement, Volume) else np.asarray(agreement)
    if arr.shape != ct.shape:
        from ..errors import GeometryError

        raise GeometryError(f"agreement volume shape {arr.shape} does not match the CT {ct.shape}")
    return arr


def render_study(ct: Volume, labels: Volume, result: StudyResult, options: ReviewSettings, salt: str | None = None,
                 agreement=None, *, shown: bool = False) -> OverlaySet:
    """Render one composite per lesion slice (largest lesions first, capped) and the summary image.

    ``labels`` are drawn as counted (:func:`display_labels`); ``salt`` keys the anonymised id (None:
    the installation's secret); ``agreement``: optional fold-agreement volume (0..1, same grid as
    the CT) shown as a heat map. ``shown``: ``labels`` already come from :func:`display_labels`
    (build_review computes them once for the overlays, the page and the SEG).
    """
    if not shown:
        labels = display_labels(ct, labels)
    lesions = result.lesions
    box = crop_box(labels, options)
    flips = display_flips(ct)
    agreement = _agreement_array(agreement, ct)
    shown = display_items(result.study.to_dict(), options.fields, salt)
    wl = f"W {options.window[1]:g} / L {options.window[0]:g}"
    wanted: list[int] = []
    for les in sorted(lesions, key=lambda x: -x.voxels):
        if les.best_slice not in wanted:
            wanted.append(les.best_slice)
    chosen, skipped = wanted[: options.max_slices], wanted[options.max_slices:]
    ovs = OverlaySet(lesions, box, flips, skipped_slices=sorted(skipped))
    for k in sorted(chosen, key=lambda k: -_z_mm(ct, k)):  # superior first, as one scrolls a chest CT
        here = [les for les in lesions if k in les.slices]
        plain, overlay, heat = render_slice_panels(ct.array[k], labels.array[k], box, flips, options, here,
                                                   None if agreement is None else agreement[k])
        panels, titles = [plain, overlay], ["CT (calcium window)", "segmentation"]
        if heat is not None:
            panels.append(heat)
            titles.append("fold agreement")
        body = _side_by_side(_panel_titles(panels, titles))
        ref = result.slice_reference(k)
        right = f"{ref}  {wl}"
        extra = "on this slice: " + ", ".join(f"{les.name} {les.volume_mm3:.1f} mm3 peak {les.peak_hu:.0f} HU"
                                              for les in here)
        comp = _stack([statement_banner(body.width, result), _header(body.width, shown, right), body,
                       _legend(body.width, result, extra)])
        ovs.slices.append(SliceView(k, _z_mm(ct, k), here, ref, comp))
    ovs.summary = render_summary(ct, labels, result, options, box, flips, lesions, shown)
    return ovs


def _mip_label(lab: np.ndarray, axis: int) -> np.ndarray:
    """Projection of a label map: calcium wins over artery, artery over background."""
    calc = np.where(np.isin(lab, list(CALCIUM_ID.values())), lab, 0).max(axis=axis)
    art = np.where(np.isin(lab, list(ARTERY_ID.values())), lab, 0).max(axis=axis)
    return np.where(calc > 0, calc, art)


def render_summary(ct, labels, result, options, box, flips, lesions, shown) -> Image.Image:
    """Thick-slab MIP through the labelled z range: axial and coronal, with labels and lesion names."""
    y0, y1, x0, x1 = box
    zs = np.nonzero(labels.array.any(axis=(1, 2)))[0]
    z0, z1 = (int(zs.min()), int(zs.max()) + 1) if len(zs) else (0, ct.shape[0])
    # Projections of the zoomed region only (not of whole slices that are then cut).
    slab = ct.array[z0:z1, y0:y1, x0:x1]
    lab = labels.array[z0:z1, y0:y1, x0:x1]
    ax_hu = _orient(slab.max(axis=0), flips)
    ax_lab = _orient(_mip_label(lab, 0), flips)
    scale = _scale_for(y1 - y0, x1 - x0, options.display_px)
    g = _upscale(Image.fromarray(to_grey(ax_hu, options.window)), scale, True)
    lab_up = np.asarray(_upscale(Image.fromarray(ax_lab.astype(np.uint8)), scale, False))
    rgba = label_rgba(lab_up)
    rgba[_calcium_outline(lab_up)] = (255, 255, 255, 255)
    axial = blend(g, Image.fromarray(rgba, "RGBA"))
    d = ImageDraw.Draw(axial)
    for les in lesions:
        cy, cx = les.centre_yx[0] - y0, les.centre_yx[1] - x0
        if flips[0]:
            cy = (y1 - y0 - 1) - cy
        if flips[1]:
            cx = (x1 - x0 - 1) - cx
        d.text(((cx + 0.5) * scale + 6, (cy + 0.5) * scale - 18), les.name, fill=ARTERY_COLOURS[les.artery],
               font=font(14), stroke_width=2, stroke_fill=(0, 0, 0))
    _orientation_marks(d, axial.width, axial.height)
    # coronal MIP over the crop's y range: rows = z (superior at the top), aspect from spacing
    cor_hu = slab.max(axis=1)[::-1]
    cor_lab = _mip_label(lab, 1)[::-1]
    if flips[1]:
        cor_hu, cor_lab = cor_hu[:, ::-1], cor_lab[:, ::-1]
    dz, dx = ct.spacing_zyx[0], ct.spacing_zyx[2]
    w = axial.width
    h = max(1, round(cor_hu.shape[0] * dz / dx * scale))
    gc = Image.fromarray(to_grey(cor_hu, options.window)).resize((w, h), Image.Resampling.BILINEAR)
    lc = np.asarray(Image.fromarray(cor_lab.astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST))
    rc = label_rgba(lc)
    rc[_calcium_outline(lc)] = (255, 255, 255, 255)
    coronal = blend(gc, Image.fromarray(rc, "RGBA"))
    dc = ImageDraw.Draw(coronal)
    dc.text((6, 4), "S", fill=(255, 255, 0), font=font(13))
    dc.text((6, h - 18), "I", fill=(255, 255, 0), font=font(13))
    dc.text((6, h // 2 - 8), "R", fill=(255, 255, 0), font=font(13))
    dc.text((w - 14, h // 2 - 8), "L", fill=(255, 255, 0), font=font(13))
    thick = (z1 - z0) * dz
    body = _side_by_side(_panel_titles([axial, coronal], [f"axial MIP, slab {thick:.0f} mm", "coronal MIP"]))
    right = f"summary  {len(lesions)} lesion(s)  W {options.window[1]:g} / L {options.window[0]:g}"
    return _stack([statement_banner(body.width, result), _header(body.width, shown, right), body,
                   _legend(body.width, result)])


def overlay_file_name(result: StudyResult, k: int) -> str:
    """A lesion-slice PNG's name: ``image_0042.png`` after the PACS InstanceNumber of volume slice ``k``
    when the series has unique instance numbers, else ``slice_0059.png`` (1-based volume order)."""
    numbers = (result.ct or {}).get("instance_numbers") or []
    known = [n for n in numbers if n is not None]
    if len(known) == len(numbers) and len(set(known)) == len(known) and k < len(numbers):
        return f"image_{int(numbers[k]):04d}.png"
    return f"slice_{k + 1:04d}.png"


def write_overlays(ovs: OverlaySet, out_dir: Path, result: StudyResult) -> list[Path]:
    """Write summary.png and one PNG per lesion slice (:func:`overlay_file_name`), owner-only
    (cacpipe.files); returns the paths (summary first)."""
    make_private_dir(out_dir)
    paths = []
    if ovs.summary is not None:
        p = out_dir / "summary.png"
        ovs.summary.save(p, optimize=False)
        paths.append(p)
    for sv in ovs.slices:
        p = out_dir / overlay_file_name(result, sv.k)
        sv.composite.save(p)
        sv.file = p.name
        paths.append(p)
    protect([out_dir, *paths])
    return paths
