"""The label scheme: the one place that defines class ids, names, nnU-Net regions and colours.

Everything else (dataset builder, inference, quantification, overlays, DICOM SEG) imports from
here. Ids are the six-class ground-truth map written by the phantom and by ``label_tools``:
0 background, 1-3 non-calcified artery (lumen/wall), 4-6 calcium of that artery. Classes do
not overlap; a voxel is either artery or calcium of that artery.
"""

from __future__ import annotations

from dataclasses import dataclass

ARTERIES: tuple[str, ...] = ("RCA", "LAD", "LCX")
"""Artery names in report order. "LAD" includes the left main (mainstem), as in MASS."""

ARTERY_LONG_NAMES: dict[str, str] = {
    "RCA": "right coronary artery",
    "LAD": "left main + left anterior descending artery",
    "LCX": "left circumflex artery",
}


@dataclass(frozen=True)
class LabelClass:
    """One class of the six-class label map."""

    id: int
    name: str
    artery: str
    is_calcium: bool
    colour: tuple[int, int, int]  # RGB 0-255, used for overlays, review pages and DICOM SEG


# Display colours fixed by the product: RCA green, LAD yellow, LCX red, calcium blue.
ARTERY_COLOURS: dict[str, tuple[int, int, int]] = {
    "RCA": (0, 200, 0),
    "LAD": (255, 215, 0),
    "LCX": (230, 0, 0),
}
CALCIUM_COLOUR: tuple[int, int, int] = (30, 110, 255)

BACKGROUND = 0
LABEL_CLASSES: tuple[LabelClass, ...] = (
    LabelClass(1, "RCA", "RCA", False, ARTERY_COLOURS["RCA"]),
    LabelClass(2, "LAD", "LAD", False, ARTERY_COLOURS["LAD"]),
    LabelClass(3, "LCX", "LCX", False, ARTERY_COLOURS["LCX"]),
    LabelClass(4, "RCA_calcium", "RCA", True, CALCIUM_COLOUR),
    LabelClass(5, "LAD_calcium", "LAD", True, CALCIUM_COLOUR),
    LabelClass(6, "LCX_calcium", "LCX", True, CALCIUM_COLOUR),
)
NUM_CLASSES = len(LABEL_CLASSES)  # six output classes (excluding background)

LABEL_BY_NAME: dict[str, LabelClass] = {c.name: c for c in LABEL_CLASSES}
LABEL_BY_ID: dict[int, LabelClass] = {c.id: c for c in LABEL_CLASSES}

ARTERY_ID: dict[str, int] = {a: LABEL_BY_NAME[a].id for a in ARTERIES}
CALCIUM_ID: dict[str, int] = {a: LABEL_BY_NAME[f"{a}_calcium"].id for a in ARTERIES}
CALCIUM_IDS: tuple[int, ...] = tuple(CALCIUM_ID[a] for a in ARTERIES)

# nnU-Net v2 region-based training: each region is the set of label ids it covers.
# whole_<artery> = artery + its calcium; <artery>_calcium = calcium alone.
REGIONS: dict[str, tuple[int, ...]] = {
    **{f"whole_{a}": (ARTERY_ID[a], CALCIUM_ID[a]) for a in ARTERIES},
    **{f"{a}_calcium": (CALCIUM_ID[a],) for a in ARTERIES},
}
# Regions are thresholded at sigmoid 0.5 and painted in this order, so calcium (painted last)
# wins over the whole-artery region that contains it.
REGIONS_CLASS_ORDER: tuple[int, ...] = tuple(c.id for c in LABEL_CLASSES)

# MASS (LUMC 2021EXP) annotation classes: three arteries and one calcium class for any artery.
MASS_CLASSES: tuple[str, ...] = ("RCA", "LAD", "LCX", "calcium")


def nnunet_labels() -> dict[str, int | list[int]]:
    """The ``labels`` entry of an nnU-Net v2 dataset.json (insertion order matters; do not sort)."""
    out: dict[str, int | list[int]] = {"background": BACKGROUND}
    for name, ids in REGIONS.items():
        out[name] = list(ids) if len(ids) > 1 else ids[0]
    return out


def nnunet_dataset_json(num_training: int, name: str = "cacpipe_coronary") -> dict:
    """A complete nnU-Net v2 dataset.json for our six-class region-based scheme."""
    return {
        "name": name,
        "channel_names": {"0": "CT"},
        "labels": nnunet_labels(),
        "regions_class_order": list(REGIONS_CLASS_ORDER),
        "numTraining": int(num_training),
        "file_ending": ".nii.gz",
    }


def colour_lut() -> dict[int, tuple[int, int, int]]:
    """Label id -> RGB for every non-background class."""
    return {c.id: c.colour for c in LABEL_CLASSES}
