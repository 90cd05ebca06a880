"""Devices and grafts seen in the CT: what they are, where, and which voxels they explain.

Metal is what no tissue reaches: voxels >= ``METAL_HU`` (1400 HU). Cortical bone shows <= ~1000 HU
and coronary calcium <= ~800 HU in the v2 phantoms (noise-free image; +4 noise SD <= ~1200 HU),
while stent and TAVI struts reach 1500-1900 HU on 1.5-3 mm slices and 2000-3071 HU on thin ones,
wires and cans 3071 HU. An object needs ``MIN_METAL_VOXELS`` such voxels. Metal voxels closer
than ``GROUP_MM`` to each other form one object (a stent's or a TAVI frame's struts, a lead's
pieces); each object is then named from where it lies relative to the heart mask and the
predicted coronary labels (LPS patient coordinates, never array axes):

- **stent**: most of it within ``STENT_NEAR_MM`` of one artery's labels, at least
  ``STENT_MIN_LENGTH_MM`` long -> ``stent_suspected`` for that artery;
- **pacing lead / device can**: a large object outside the heart (the can: >= ``CAN_MIN_MM3``), or
  a long thin one that runs into the heart from above (leads, ICD coils) -> ``metal_device``;
- **valve prosthesis**: any other object inside the heart or on its surface (mechanical valve
  ring, TAVI frame, annuloplasty ring) -> ``metal_device``;
- **sternal wire / graft clip**: objects in front of the heart near the body's midline (sternal
  wires, at least two at different heights) or small ones on the anterior heart surface off the
  coronary labels (clips of a mammary graft) -> ``cabg_suspected``.

Every object's metal (on the heart: grown into its 500-1400 HU parts within ``GROW_MM``) plus
``MARGIN_MM`` (blooming and partial volume reach ~2 mm) make the
**exclusion mask**; :func:`exclude_device_calcium` takes every calcium lesion of the label map that
touches it out of the count (its voxels become artery label) and says so in a
``device_calcium_excluded`` flag per artery (lesions, volume, Agatston, image numbers), so that no
device is ever counted as native coronary calcium and nothing is removed silently.

Arrays are (z, y, x); slice indices are 0-based in volume order; image numbers are the PACS
InstanceNumber of those slices when known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .. import flags as F
from ..flags import Flag
from ..labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from ..volume import Volume
from .lesions import find_lesions

METAL_HU = 1400.0
GROUP_MM = 4.0  # metal voxels closer than this belong to one object (struts of a mesh, pieces of a lead)
GROUP_SLICES = 1.6  # ... or closer than this many slice spacings (thick slices: struts a slice apart)
MARGIN_MM = 3.0
GROW_MM = 6.0  # on the heart, a device's 500-1400 HU parts connected to its metal, this far, are the device too
DEVICE_LOW_HU = 500.0  # exclusion reaches this far from the metal (blooming, partial volume, crushed calcium)
STENT_NEAR_MM = 3.0
STENT_SHARE = 0.6  # share of an object's metal within STENT_NEAR_MM of one artery's labels
STENT_MIN_LENGTH_MM = 5.0
CAN_MIN_MM3 = 1000.0  # a pulse generator / ICD can is a ~5 x 4 x 1 cm metal box
LEAD_MIN_LENGTH_MM = 40.0
LEAD_IN_HEART_MM = 50.0
HEART_NEAR_MM = 10.0  # within this of the heart mask: "on the heart"
STERNAL_MIDLINE_MM = 45.0  # sternal wires lie within this of the body midline, in front of the heart
MIN_METAL_VOXELS = 3
# A known device's thin parts under METAL_HU (see _thin_parts): denser than the phantoms' native
# calcium (<= ~800 HU noise-free); only looked for where a valve or bypass surgery is already seen.
PIECE_HU = 900.0
CHAIN_MM = 12.0  # a valve frame's strut pieces lie this close to each other
CLIP_PEAK_HU = 1000.0
CLIP_OFF_HEART_MM = 8.0  # graft clips lie off the heart; native coronary calcium on it
CLIP_MAX_MM3 = 60.0
VALVE_STRUT_MAX_MM = 10.0  # a 'stent' this short next to a valve frame is one of its struts
MESH_MIN_PIECES = 8  # a TAVI frame shows dozens of strut pieces; native calcium one lump or a few
MESH_MIN_MM = 15.0

DEVICE_KINDS = ("stent", "device_can", "pacing_lead", "valve_prosthesis", "sternal_wire", "graft_clip", "metal")
METAL_DEVICE_KINDS = frozenset({"device_can", "pacing_lead", "valve_prosthesis"})
CABG_KINDS = frozenset({"sternal_wire", "graft_clip"})


@dataclass(frozen=True)
class DeviceFinding:
    """One metal object: its kind, where it is and how much metal it holds."""

    kind: str
    slices: tuple[int, ...]  # 0-based volume slices holding its metal
    centre_zyx: tuple[float, float, float]  # voxel units
    centre_lps_mm: tuple[float, float, float]
    metal_mm3: float
    length_mm: float
    artery: str | None = None  # stents: the artery it lies in
    images: tuple[int | None, ...] = ()  # the PACS InstanceNumber of ``slices`` (None: unknown)

    def where(self) -> str:
        """'images 41-57' (InstanceNumber) or 'slices 12-30' (1-based volume slices)."""
        return slice_span(self.slices, self.images)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["slices"] = [int(self.slices[0]), int(self.slices[-1])] if self.slices else []
        known = [i for i in self.images if i is not None]
        d["images"] = [min(known), max(known)] if known else []
        d["centre_zyx"] = [round(float(c), 1) for c in self.centre_zyx]
        d["centre_lps_mm"] = [round(float(c), 1) for c in self.centre_lps_mm]
        d["metal_mm3"] = round(self.metal_mm3, 1)
        d["length_mm"] = round(self.length_mm, 1)
        return d


@dataclass
class DeviceScan:
    """What :func:`find_devices` saw: the objects, the exclusion mask (bool, z y x) and its flags."""

    findings: list[DeviceFinding]
    exclusion: np.ndarray
    flags: list[Flag] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def to_dict(self) -> dict:
        return {**self.info, "findings": [f.to_dict() for f in self.findings],
                "excluded_voxels": int(self.exclusion.sum())}


def slice_span(slices: Sequence[int], images: Sequence[int | None] = ()) -> str:
    """How a reader finds slices in PACS: 'images 41-57' when InstanceNumbers are known, else
    'slices 12-30' (1-based volume order)."""
    if not len(slices):
        return "no slice"
    if images and all(i is not None for i in images):
        lo, hi = min(images), max(images)  # type: ignore[type-var]
        return f"image {lo}" if lo == hi else f"images {lo}-{hi}"
    lo, hi = min(slices) + 1, max(slices) + 1
    return f"slice {lo}" if lo == hi else f"slices {lo}-{hi}"


def _images(slices: Sequence[int], instance_numbers: Sequence[int | None] | None) -> tuple[int | None, ...]:
    if not instance_numbers:
        return ()
    n = len(instance_numbers)
    return tuple(instance_numbers[s] if 0 <= s < n else None for s in slices)


def _ball(radius_mm: float, spacing_zyx) -> np.ndarray:
    r = [max(1, int(np.ceil(radius_mm / s))) for s in spacing_zyx]
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    sz, sy, sx = spacing_zyx
    return (zz * sz) ** 2 + (yy * sy) ** 2 + (xx * sx) ** 2 <= radius_mm**2 + 1e-9


def _groups(idx: np.ndarray, spacing_zyx, group_mm: float) -> tuple[np.ndarray, int]:
    """Group ids of metal voxels (N, 3 indices) linked by distances < about group_mm (mm).

    Voxels are pooled into cells of group_mm / 2 first (a can holds ~10^4 metal voxels; pairs of
    voxels would be ~10^7), and cells closer than group_mm are linked."""
    cell = group_mm / 2.0
    pts = idx * np.asarray(spacing_zyx, float)
    keys = np.floor(pts / cell).astype(np.int64)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    centres = (uniq + 0.5) * cell
    pairs = cKDTree(centres).query_pairs(group_mm, output_type="ndarray")
    n = len(centres)
    count, lab = _linked(n, pairs)
    return lab[np.ravel(inv)], count


def group_distance(spacing_zyx) -> float:
    """How close two metal voxels must be (mm) to belong to one object: ``GROUP_MM``, or more on
    thick slices. A 3 mm slice shows a TAVI frame's or a stent's struts as single metal voxels a
    slice apart (>= 3 mm in z alone): linked only within ``GROUP_SLICES`` slice spacings."""
    return max(GROUP_MM, GROUP_SLICES * float(spacing_zyx[0]))


def _linked(n: int, pairs: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of ``n`` nodes joined by ``pairs`` (M, 2): (count, label per node)."""
    graph = coo_matrix((np.ones(len(pairs), bool), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else \
        coo_matrix((n, n), dtype=bool)
    return connected_components(graph, directed=False)


def _length(pts_mm: np.ndarray) -> float:
    if len(pts_mm) < 2:
        return 0.0
    c = pts_mm - pts_mm.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    p = c @ vt[0]
    return float(p.max() - p.min())


def _distance_to(mask: np.ndarray | None, idx: np.ndarray, spacing_zyx, cap_mm: float) -> np.ndarray:
    """Distance (mm) from each voxel index of ``idx`` (N, 3) to ``mask``: 0 inside it, inf beyond
    ``cap_mm`` or when the mask is empty. Measured to the mask's surface voxels with a k-d tree
    (a distance map over a chest-sized box would take minutes)."""
    out = np.full(len(idx), np.inf)
    if mask is None or not mask.any() or len(idx) == 0:
        return out
    box = _bbox(mask)
    sub = mask[box] > 0
    surface = sub & ~ndimage.binary_erosion(sub)
    sp = np.asarray(spacing_zyx, float)
    pts = (np.argwhere(surface) + [s.start for s in box]) * sp
    inside = mask[idx[:, 0], idx[:, 1], idx[:, 2]] > 0
    d, _ = cKDTree(pts).query(idx * sp, distance_upper_bound=cap_mm)
    out[:] = d
    out[inside] = 0.0
    return out


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of a non-empty mask's nonzero voxels, from its projections (the slices
    ``ndimage.find_objects`` gives, without a pass that labels the whole array)."""
    from ..heart.crop import mask_bbox

    found = mask_bbox(mask)
    assert found is not None
    return tuple(slice(lo, hi) for lo, hi in zip(*found, strict=True))


def find_devices(ct: Volume, labels: Volume | np.ndarray | None = None, heart: Volume | np.ndarray | None = None,
                 instance_numbers: Sequence[int | None] | None = None, *, metal_hu: float = METAL_HU,
                 margin_mm: float = MARGIN_MM) -> DeviceScan:
    """Devices and grafts in ``ct`` (HU, z y x): findings, the exclusion mask and their flags.

    ``labels``: the six-class coronary map on the CT grid (for stents); ``heart``: the heart mask
    (0/1, same grid); ``instance_numbers``: PACS InstanceNumber per volume slice (image numbers in
    the flags). Flags: ``metal_device`` (pacemaker/ICD, valve prosthesis), ``cabg_suspected``
    (sternal wires, graft clips), ``stent_suspected`` per artery (severity warning: the stent's
    metal is excluded from the count, the stented segment itself is not assessable).
    """
    hu = np.asarray(ct.array)
    sp = tuple(float(s) for s in ct.spacing_zyx)
    excl = np.zeros(hu.shape, dtype=bool)
    metal = hu >= metal_hu
    idx = np.argwhere(metal)
    info: dict = {"metal_hu": metal_hu, "margin_mm": margin_mm, "metal_voxels": int(len(idx))}
    lab = None if labels is None else np.asarray(labels.array if isinstance(labels, Volume) else labels)
    hm = None if heart is None else np.asarray(heart.array if isinstance(heart, Volume) else heart) > 0
    vox = float(np.prod(sp))
    findings = _metal_objects(ct, hu, sp, idx, lab, hm, vox, instance_numbers) if len(idx) >= MIN_METAL_VOXELS else []
    findings += _thin_parts(ct, hu, sp, findings, hm, lab, vox, instance_numbers)
    findings = _valve_struts_not_stents(findings, sp)
    ball = _ball(margin_mm, sp)
    grow = _ball(GROW_MM, sp)
    for f, gi in findings:
        # On the heart, a device's thinner parts (a TAVI frame's or a stent's struts on thick slices)
        # show 500-1400 HU: grown from the metal into them (within GROW_MM), then the margin.
        small = f.kind not in ("device_can", "sternal_wire") and f.metal_mm3 < CAN_MIN_MM3
        pad = np.array(ball.shape) // 2 + (np.array(grow.shape) // 2 if small else 0)
        lo = np.maximum(gi.min(axis=0) - pad, 0)
        hi = np.minimum(gi.max(axis=0) + pad + 1, hu.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        sub = np.zeros(tuple(int(b - a) for a, b in zip(lo, hi, strict=True)), bool)
        rel = gi - lo
        sub[rel[:, 0], rel[:, 1], rel[:, 2]] = True
        if small:
            reach = ndimage.binary_dilation(sub, structure=grow) & (hu[box] >= DEVICE_LOW_HU)
            sub = ndimage.binary_propagation(sub, structure=np.ones((3, 3, 3), bool), mask=reach | sub)
        excl[box] |= ndimage.binary_dilation(sub, structure=ball)
    out = [f for f, _ in findings]
    info["objects"] = len(out)
    return DeviceScan(out, excl, device_flags(out), info)


def _metal_objects(ct: Volume, hu: np.ndarray, sp, idx: np.ndarray, lab: np.ndarray | None, hm: np.ndarray | None,
                   vox: float, instance_numbers) -> list[tuple[DeviceFinding, np.ndarray]]:
    """The metal objects of ``idx`` (metal voxel indices, z y x), each named by where it lies."""
    gid, n = _groups(idx, sp, group_distance(sp))
    phys = ct.index_to_physical(idx.astype(float))  # LPS mm
    d_heart = _distance_to(hm, idx, sp, 40.0)
    artery_d = {}
    if lab is not None:
        for a in ARTERIES:
            m = (lab == ARTERY_ID[a]) | (lab == CALCIUM_ID[a])
            artery_d[a] = _distance_to(m, idx, sp, STENT_NEAR_MM + 1.0) if m.any() else np.full(len(idx), np.inf)
    heart_c = None
    if hm is not None and hm.any():
        hb = _bbox(hm)
        heart_c = ct.index_to_physical((np.argwhere(hm[hb]).mean(axis=0) + [s.start for s in hb])[None])[0]
        heart_front = float(ct.index_to_physical(np.argwhere(hm[hb])[::50] + [s.start for s in hb])[:, 1].min())
    midline = _body_midline(ct, hu, int(np.median(idx[:, 0])))
    findings: list[tuple[DeviceFinding, np.ndarray]] = []
    for g in range(n):
        sel = gid == g
        if sel.sum() < MIN_METAL_VOXELS:
            continue
        gi, gp = idx[sel], phys[sel]
        volume = float(sel.sum()) * vox
        length = _length(gp)
        near_heart = float(np.mean(d_heart[sel] <= HEART_NEAR_MM))
        inside = float(np.mean(d_heart[sel] <= 0.0))
        artery = None
        if artery_d:
            shares = {a: float(np.mean(d[sel] <= STENT_NEAR_MM)) for a, d in artery_d.items()}
            best = max(shares, key=shares.__getitem__)
            if shares[best] >= STENT_SHARE and length >= STENT_MIN_LENGTH_MM and volume < CAN_MIN_MM3:
                artery = best
        centre = gp.mean(axis=0)
        if artery is not None:
            kind = "stent"
        elif volume >= CAN_MIN_MM3 and near_heart < 0.5:
            kind = "device_can"
        elif inside > 0.0 and length >= LEAD_MIN_LENGTH_MM and gp[:, 2].max() - centre[2] > 15.0 \
                and near_heart < 0.95:
            kind = "pacing_lead"  # runs into the heart from above (the veins)
        elif near_heart >= 0.5:
            front = heart_c is not None and centre[1] < heart_front + 10.0 and inside < 0.5
            if front and volume < 30.0:
                kind = "graft_clip"
            elif inside > 0.0 and length >= LEAD_IN_HEART_MM:
                kind = "pacing_lead"  # longer than any valve frame (rings ~30 mm, TAVI ~45 mm)
            else:
                kind = "valve_prosthesis"
        else:
            anterior = heart_c is not None and centre[1] < heart_front
            mid = midline is None or abs(centre[0] - midline) <= STERNAL_MIDLINE_MM
            if anterior and mid:
                kind = "sternal_wire"
            elif length >= LEAD_MIN_LENGTH_MM and volume < 0.05 * length ** 2 and heart_c is not None \
                    and centre[2] > heart_c[2]:
                kind = "pacing_lead"  # a lead's course in the veins above the heart
            else:
                kind = "metal"
        findings.append((_finding(ct, kind, gi, vox, instance_numbers, artery), gi))
    # sternal wires come in several loops at different heights: one alone is not evidence of surgery
    wires = [f for f, _ in findings if f.kind == "sternal_wire"]
    if len(wires) == 1:
        findings = [(DeviceFinding(**{**asdict(f), "kind": "metal"}) if f.kind == "sternal_wire" else f, gi)
                    for f, gi in findings]
    return findings


def _thin_parts(ct: Volume, hu: np.ndarray, sp, findings: list[tuple[DeviceFinding, np.ndarray]], heart: np.ndarray | None,
                lab: np.ndarray | None, vox: float, instance_numbers) -> list[tuple[DeviceFinding, np.ndarray]]:
    """A device's parts that stay under ``METAL_HU`` (thin struts and clips on thick slices), found
    only where a device is already known, so that no native calcium elsewhere is touched:

    - a valve prosthesis's frame: dense pieces (peak >= ``PIECE_HU``) on the heart chained to its
      metal, each within ``CHAIN_MM`` of the last (a TAVI frame on 3 mm slices shows a handful of
      metal voxels and dozens of 900-1800 HU strut pieces);
    - after bypass surgery: dense pieces (peak >= ``CLIP_PEAK_HU``) outside the heart, by more than
      ``CLIP_OFF_HEART_MM``, that touch a predicted coronary label: clips on a graft the network
      took for an artery.
    Returns extra findings (kind ``valve_prosthesis`` or ``graft_clip``) with their voxels.
    """
    valves = [gi for f, gi in findings if f.kind == "valve_prosthesis"]
    cabg = any(f.kind in CABG_KINDS for f, _ in findings)
    if heart is None or not heart.any():
        return []
    # only near the heart (its box + 25 mm): bone elsewhere is dense too, and costs time. Labelled
    # and searched in that box only (indices below are the whole array's: the box's start added).
    hb = _bbox(heart)
    pad = [int(np.ceil(25.0 / s)) for s in sp]
    near = tuple(slice(max(b.start - p, 0), min(b.stop + p, n)) for b, p, n in zip(hb, pad, hu.shape, strict=True))
    off = np.array([b.start for b in near])
    comp, n = ndimage.label(hu[near] >= PIECE_HU, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return []
    known = np.zeros(comp.shape, bool)
    for _, gi in findings:
        rel = gi - off
        rel = rel[np.all((rel >= 0) & (rel < comp.shape), axis=1)]
        known[rel[:, 0], rel[:, 1], rel[:, 2]] = True
    # one distance query for every dense voxel (the heart's surface tree is built once)
    rel = np.argwhere(comp > 0)
    dense = rel + off
    which = comp[rel[:, 0], rel[:, 1], rel[:, 2]]
    d_all = _distance_to(heart, dense, sp, 60.0)
    d_min = np.full(n + 1, np.inf)
    np.minimum.at(d_min, which, d_all)
    skip = np.zeros(n + 1, bool)
    skip[which[known[rel[:, 0], rel[:, 1], rel[:, 2]]]] = True
    pieces = []
    for k, sub in enumerate(ndimage.find_objects(comp), start=1):
        if skip[k] or d_min[k] > max(HEART_NEAR_MM, 25.0):  # bone, or far from the heart
            continue
        m = comp[sub] == k
        box = tuple(slice(b.start + o, b.stop + o) for b, o in zip(sub, off, strict=True))
        gi = np.argwhere(m) + [s.start for s in box]
        pieces.append((gi, float(hu[box][m].max()), float(d_min[k])))
    out: list[tuple[DeviceFinding, np.ndarray]] = []
    taken = [False] * len(pieces)
    if not valves:
        mesh = _mesh(pieces, sp)
        if mesh:
            gi = np.concatenate([pieces[i][0] for i in mesh])
            out.append((_finding(ct, "valve_prosthesis", gi, vox, instance_numbers), gi))
            for i in mesh:
                taken[i] = True
    if valves:
        chain = np.concatenate(valves) * np.asarray(sp)
        grew = True
        while grew:  # breadth-first along the frame: each new piece may reach the next
            grew = False
            tree = cKDTree(chain)
            for i, (gi, peak, dh) in enumerate(pieces):
                if taken[i] or peak < PIECE_HU or dh > HEART_NEAR_MM:
                    continue
                dist, _ = tree.query(gi * np.asarray(sp), distance_upper_bound=CHAIN_MM)
                if np.isfinite(dist).any():
                    taken[i] = grew = True
                    chain = np.concatenate([chain, gi * np.asarray(sp)])
        if any(taken):
            gi = np.concatenate([p[0] for p, t in zip(pieces, taken, strict=True) if t])
            out.append((_finding(ct, "valve_prosthesis", gi, vox, instance_numbers), gi))
    if cabg and lab is not None:
        coronary = lab > 0
        for i, (gi, peak, dh) in enumerate(pieces):
            if taken[i] or peak < CLIP_PEAK_HU or dh < CLIP_OFF_HEART_MM or len(gi) * vox > CLIP_MAX_MM3:
                continue
            near = _distance_to(coronary, gi, sp, STENT_NEAR_MM)
            if np.isfinite(near).any():
                taken[i] = True
                out.append((_finding(ct, "graft_clip", gi, vox, instance_numbers), gi))
    return out


def _valve_struts_not_stents(findings: list[tuple[DeviceFinding, np.ndarray]], sp) -> list[tuple[DeviceFinding, np.ndarray]]:
    """A short 'stent' within ``CHAIN_MM`` of a valve prosthesis is a strut of its frame next to a
    coronary ostium (a TAVI frame reaches the left main): the valve, not a stent in the artery."""
    valves = [gi for f, gi in findings if f.kind == "valve_prosthesis"]
    if not valves:
        return findings
    tree = cKDTree(np.concatenate(valves) * np.asarray(sp, float))
    out = []
    for f, gi in findings:
        if f.kind == "stent" and f.length_mm < VALVE_STRUT_MAX_MM:
            d, _ = tree.query(gi * np.asarray(sp, float), distance_upper_bound=CHAIN_MM)
            if np.isfinite(d).any():
                f = DeviceFinding(**{**asdict(f), "kind": "valve_prosthesis", "artery": None})
        out.append((f, gi))
    return out


def _mesh(pieces: list[tuple[np.ndarray, float, float]], sp) -> list[int]:
    """The largest cluster of dense pieces on the heart, each within ``CHAIN_MM`` of another, when
    it holds at least ``MESH_MIN_PIECES`` pieces over ``MESH_MIN_MM``: a metal mesh (a TAVI frame
    on thick, noisy slices, where not one voxel reaches ``METAL_HU``). Native calcium is one
    lump or a few; no plaque of the phantoms reaches ``PIECE_HU`` noise-free."""
    cand = [i for i, (_, peak, dh) in enumerate(pieces) if peak >= PIECE_HU and dh <= HEART_NEAR_MM]
    if len(cand) < MESH_MIN_PIECES:
        return []
    pts = np.concatenate([pieces[i][0] for i in cand]) * np.asarray(sp, float)
    owner = np.concatenate([np.full(len(pieces[i][0]), j) for j, i in enumerate(cand)])
    pairs = cKDTree(pts).query_pairs(CHAIN_MM, output_type="ndarray")
    _, lab = _linked(len(cand), owner[pairs])
    best = int(np.argmax(np.bincount(lab)))
    members = [cand[j] for j in np.flatnonzero(lab == best)]
    if len(members) < MESH_MIN_PIECES:
        return []
    extent = _length(np.concatenate([pieces[i][0] for i in members]) * np.asarray(sp, float))
    return members if extent >= MESH_MIN_MM else []


def _finding(ct: Volume, kind: str, gi: np.ndarray, vox: float, instance_numbers,
             artery: str | None = None) -> DeviceFinding:
    """The finding of one object from its voxels ``gi`` (N, 3 indices, z y x)."""
    zs = tuple(int(z) for z in np.unique(gi[:, 0]))
    pts = ct.index_to_physical(gi.astype(float))
    return DeviceFinding(kind, zs, tuple(float(c) for c in gi.mean(axis=0)), tuple(float(c) for c in pts.mean(axis=0)),
                         float(len(gi)) * vox, _length(pts), artery, _images(zs, instance_numbers))


def _body_midline(ct: Volume, hu: np.ndarray, k: int) -> float | None:
    """Patient-left coordinate (mm) of the trunk's left-right middle on slice ``k``."""
    sl = hu[int(np.clip(k, 0, hu.shape[0] - 1))] > -500
    comp, n = ndimage.label(sl)
    if n == 0:
        return None
    trunk = comp == (int(np.argmax(np.bincount(comp.ravel())[1:])) + 1)
    cols = np.nonzero(trunk.any(axis=0))[0]
    rows = np.nonzero(trunk.any(axis=1))[0]
    r = int((rows[0] + rows[-1]) // 2)
    pts = np.array([[k, r, cols[0]], [k, r, cols[-1]]], float)
    return float(ct.index_to_physical(pts)[:, 0].mean())


_NAMES = {"stent": "stent", "device_can": "pacemaker/ICD can", "pacing_lead": "pacing/ICD lead",
          "valve_prosthesis": "valve prosthesis (mechanical, transcatheter or annuloplasty ring)",
          "sternal_wire": "sternal wire", "graft_clip": "surgical clip (bypass graft)", "metal": "metal"}


def _describe(fs: list[DeviceFinding]) -> str:
    return "; ".join(f"{_NAMES[f.kind]} at {f.where()} ({f.metal_mm3:.0f} mm3 of metal)" for f in fs)


def device_flags(findings: list[DeviceFinding]) -> list[Flag]:
    """``metal_device``, ``cabg_suspected`` and per-artery ``stent_suspected`` from the findings."""
    out: list[Flag] = []
    dev = [f for f in findings if f.kind in METAL_DEVICE_KINDS]
    if dev:
        valve = any(f.kind == "valve_prosthesis" for f in dev)
        out.append(Flag(F.METAL_DEVICE, f"metal device seen: {_describe(dev)}; its metal and {MARGIN_MM:g} mm around "
                        "it are never counted as coronary calcium"
                        + ("; native valve calcium cannot be told from the prosthesis" if valve else "")
                        + "; check the overlays near it", "warning"))
    cabg = [f for f in findings if f.kind in CABG_KINDS]
    if cabg:
        out.append(Flag(F.CABG_SUSPECTED, f"signs of bypass surgery (CABG): {_describe(cabg)}; grafts and clips are "
                        "not native coronary arteries: check the per-artery attribution", "warning"))
    for a in ARTERIES:
        st = [f for f in findings if f.kind == "stent" and f.artery == a]
        if st:
            out.append(Flag(F.STENT_SUSPECTED, f"{a}: stent suspected ({_describe(st)}, {max(f.length_mm for f in st):.0f}"
                            " mm long): its metal is not counted as calcium; calcium inside the stented segment "
                            "cannot be assessed", "warning", a))
    return out


def exclude_device_calcium(ct: Volume, labels: Volume, scan: DeviceScan,
                           instance_numbers: Sequence[int | None] | None = None) -> tuple[Volume, list[Flag], list[dict]]:
    """Take every calcium lesion that touches ``scan.exclusion`` out of the count.

    Returns the label map with those lesions' voxels relabelled artery (ids 4-6 -> 1-3: they stay
    part of the tree, they are no longer calcium), one ``device_calcium_excluded`` flag per artery
    that lost calcium (lesions, volume, Agatston, image numbers, which device) and a record per
    excluded lesion. A lesion is judged whole: calcium that touches a device is not native
    coronary calcium that could be told apart from it.
    """
    lab = np.asarray(labels.array)
    if not scan.exclusion.any() or not np.isin(lab, list(CALCIUM_ID.values())).any():
        return labels, [], []
    lesions, lmap = find_lesions(ct.array, lab, ct.spacing_zyx, with_map=True)
    assert lmap is not None
    hit = np.unique(lmap[scan.exclusion & (lmap > 0)])
    hit = hit[hit > 0]
    if hit.size == 0:
        return labels, [], []
    out = lab.copy()
    records = []
    for k in hit:
        les = lesions[int(k) - 1]
        m = lmap == k
        out[m] = ARTERY_ID[les.artery]
        near = [f for f in scan.findings if set(f.slices) & set(les.slices)]
        records.append({"artery": les.artery, "volume_mm3": round(les.volume_mm3, 1), "agatston": round(les.agatston, 1),
                        "peak_hu": round(les.peak_hu, 0), "slices": [les.slices[0], les.slices[-1]],
                        "images": sorted(i for i in _images((les.slices[0], les.slices[-1]), instance_numbers)
                                         if i is not None),
                        "device": sorted({f.kind for f in near}) or ["metal"]})
    flags = []
    for a in ARTERIES:
        rs = [r for r, k in zip(records, hit, strict=True) if lesions[int(k) - 1].artery == a]
        if not rs:
            continue
        sl = sorted({s for k in hit if lesions[int(k) - 1].artery == a for s in lesions[int(k) - 1].slices})
        where = slice_span(sl, _images(sl, instance_numbers))
        kinds = sorted({d for r in rs for d in r["device"]})
        flags.append(Flag(F.DEVICE_CALCIUM_EXCLUDED,
                          f"{a}: {len(rs)} calcium lesion(s) at {where} touching a device ({', '.join(_NAMES[d] for d in kinds)}"
                          f"; {sum(r['volume_mm3'] for r in rs):.0f} mm3, Agatston {sum(r['agatston'] for r in rs):.0f}) "
                          "not counted as native coronary calcium; check the overlay", "warning", a))
    return labels.with_array(out), flags, records


def screen_devices(ct: Volume, labels: Volume, heart: Volume | None = None,
                   instance_numbers: Sequence[int | None] | None = None) -> tuple[DeviceScan, Volume, list[Flag]]:
    """:func:`find_devices`, then :func:`exclude_device_calcium`: (scan, the label map to count, flags).

    The pipeline calls this on the refined map, before quantification, so every calcium label,
    whatever found it (network, completion, density rule), passes the device exclusion.
    ``scan.info['excluded_lesions']`` lists what was taken out.
    """
    scan = find_devices(ct, labels, heart, instance_numbers)
    labels, excluded, records = exclude_device_calcium(ct, labels, scan, instance_numbers)
    scan.info["excluded_lesions"] = records
    return scan, labels, scan.flags + excluded
