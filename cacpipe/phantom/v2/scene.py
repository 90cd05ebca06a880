"""The large structures of one phantom, in paint order, and their rasterisation.

Later items overwrite earlier ones. Each item is (solid, HU, heart) where ``heart`` is 1 (part
of the heart mask: myocardium and chambers), 0 (clears it: great vessels, aortic root,
pericardium) or None (leaves it). Rendered on sub-planes of each slice (the slice profile) in
two threads over halves of the scan, then averaged to the written slices.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .config import ChestConfig
from .coronary import Branch, outer_radius
from .devices import DeviceSet
from .heart import HeartModel, grown
from .raster import Below, Both, Box, Capsules, Planes
from .thorax import (
    Body,
    abdomen_solids,
    cavity,
    diaphragm_height,
    lung_top_height,
    lung_vessels,
    mediastinum,
    skeleton_solids,
    table_solids,
    trunk_solids,
    vessel_solids,
)

SUBPLANE_MM = 2.5  # large structures: one sub-plane per 2.5 mm of slice thickness (small ones: 0.25-0.5 mm)


@dataclass
class Scene:
    items: list  # (solid, hu, heart flag)


def build_scene(cfg: ChestConfig, body: Body, hm: HeartModel, tree: dict[str, Branch], devices: DeviceSet,
                mats: dict[str, float], x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Scene:
    items: list = []

    def add(solid, mat, heart=None):
        items.append((solid, float(mats[mat]), heart))

    for s, m in table_solids(body) + trunk_solids(cfg, body):
        add(s, m)
    dia = diaphragm_height(body, x, y)
    lungs = Below(Below(cavity(body), lung_top_height(body, x, y), x, y, below=True), dia, x, y, below=False)
    add(lungs, "lung")
    for s, m in lung_vessels(body, rng):
        add(Both(s, lungs), m)
    eff_r, eff_l = cfg.findings.pleural_effusion_mm
    for side, depth in ((-1, eff_r), (1, eff_l)):
        if depth > 0:  # dependent (posterior) fluid with a horizontal (coronal) surface in a supine patient
            back = body.by + body.cavity_b + 0.02 * body.depth
            lo = np.array([body.bx if side > 0 else -1e4, back - depth, -1e4])
            hi = np.array([1e4 if side > 0 else body.bx, 1e4, 1e4])
            add(Both(lungs, Box(lo, hi)), "fluid")
    for s, m in abdomen_solids(body, rng):
        add(Below(s, dia, x, y, below=True), m)
    add(Below(mediastinum(body), dia, x, y, below=False), "fat")
    # Pericardial sac: pericardium, effusion, epicardial fat, then the heart itself.
    fat = cfg.heart.epicardial_fat_mm
    eff = cfg.heart.pericardial_effusion_mm
    for s in hm.envelope_solids:
        add(grown(s, fat + eff + 1.5), "pericardium", 0)
    if eff > 0:
        for s in hm.envelope_solids:
            add(grown(s, fat + eff), "fluid", 0)
    for s in hm.envelope_solids:
        add(grown(s, fat), "epicardial_fat", 0)
    for solid, mat, is_heart in hm.layers:
        add(solid, mat, 1 if is_heart else 0)
    great = vessel_solids(cfg, body, hm)
    for i, (s, m) in enumerate(great):
        add(s, m, 0 if i < 5 else None)  # aorta, arch branches, pulmonary trunk/arteries leave the heart mask
    for b in tree.values():  # fat round every coronary branch: the grooves they run in
        if b.name == "LM":  # it runs from the aortic root between the atrial appendage and the outflow tract
            continue
        keep = b.s > (14.0 if b.name == "RCA" else 3.0)
        if keep.sum() >= 2:
            add(Capsules(b.points[keep][::4], outer_radius(b)[keep][::4] + 2.5), "epicardial_fat")
    for s, m in skeleton_solids(cfg, body):
        add(s, m)
    for s, m in devices.big:
        add(s, m)
    return Scene(items)


def subplane_offsets(thickness: float) -> np.ndarray:
    n = max(1, int(np.ceil(thickness / SUBPLANE_MM - 1e-9)))
    return ((np.arange(n) + 0.5) / n - 0.5) * thickness


def render(scene: Scene, z: np.ndarray, y: np.ndarray, x: np.ndarray, thickness: float,
           background: float = -1000.0, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(object HU float32 (nz, ny, nx), heart mask uint8) averaged over each slice's profile."""
    offs = subplane_offsets(thickness)
    nsub = len(offs)
    nz, ny, nx = len(z), len(y), len(x)
    obj = np.empty((nz, ny, nx), np.float32)
    heart = np.empty((nz, ny, nx), np.uint8)

    def part(k0: int, k1: int) -> None:
        zf = (z[k0:k1, None] + offs[None, :]).ravel()
        planes = Planes(zf, y, x)
        if nsub == 1:  # one plane per slice: paint straight into the output (no second full-size array)
            a, h = obj[k0:k1], heart[k0:k1]
            a.fill(background)
            h.fill(0)
        else:
            a = np.full(planes.shape, background, np.float32)
            h = np.zeros(planes.shape, np.uint8)
        for solid, hu, hflag in scene.items:
            masks: list | None = [] if hflag is not None else None
            solid.paint(planes, a, hu, mask_out=masks)
            if masks:
                for sl, m in masks:
                    np.copyto(h[sl], np.uint8(hflag), where=m)
        if nsub > 1:
            obj[k0:k1] = a.reshape(k1 - k0, nsub, ny, nx).mean(axis=1)
            heart[k0:k1] = (h.reshape(k1 - k0, nsub, ny, nx).mean(axis=1) >= 0.5)

    n_parts = max(1, min(threads, nz))
    edges = np.linspace(0, nz, n_parts + 1).astype(int)
    if n_parts == 1:
        part(0, nz)
    else:
        with ThreadPoolExecutor(n_parts) as ex:
            list(ex.map(lambda i: part(edges[i], edges[i + 1]), range(n_parts)))
    return obj, heart
