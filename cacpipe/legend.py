"""Label legends next to ``labels.nii.gz``, so that common viewers show class names and colours.

Generated from :mod:`cacpipe.labels` (ids, names, colours), the one source of the label scheme:

- ``labels.itksnap.txt``: ITK-SNAP label description file (Segmentation > Import Label Descriptions);
- ``labels.ctbl``: 3D Slicer colour table (drag it into Slicer with the label map, then choose it
  as the label map's lookup table in the Volumes module).

Open ``ct.nii.gz`` as the image and ``labels.nii.gz`` as the segmentation: both share one grid.
"""

from __future__ import annotations

from pathlib import Path

from .labels import ARTERY_LONG_NAMES, BACKGROUND, LABEL_CLASSES

ITKSNAP = "labels.itksnap.txt"
SLICER = "labels.ctbl"


def _description(c) -> str:
    what = "calcium" if c.is_calcium else "artery (non-calcified)"
    return f"{c.name}: {ARTERY_LONG_NAMES[c.artery]}, {what}"


def itksnap_text() -> str:
    """ITK-SNAP label description file of the six-class map."""
    lines = ["################################################",
             "# ITK-SnAP Label Description File (cacpipe six-class coronary map)",
             "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
             "################################################",
             f"{BACKGROUND:5d} {0:5d} {0:4d} {0:4d} {0:8g} {0:2d} {0:2d}    \"Clear Label\""]
    for c in LABEL_CLASSES:
        r, g, b = c.colour
        lines.append(f"{c.id:5d} {r:5d} {g:4d} {b:4d} {1:8g} {1:2d} {1:2d}    \"{_description(c)}\"")
    return "\n".join(lines) + "\n"


def slicer_text() -> str:
    """3D Slicer colour table (``# Color table file``; names without spaces)."""
    lines = ["# Color table file labels.ctbl (cacpipe six-class coronary map)",
             f"# {len(LABEL_CLASSES) + 1} values", f"{BACKGROUND} Background 0 0 0 0"]
    for c in LABEL_CLASSES:
        r, g, b = c.colour
        lines.append(f"{c.id} {c.name} {r} {g} {b} 255")
    return "\n".join(lines) + "\n"


def write_legends(folder: str | Path) -> dict[str, str]:
    """Write both legends into ``folder``; returns {output name: file name} for a result's ``outputs``."""
    folder = Path(folder)
    (folder / ITKSNAP).write_text(itksnap_text())
    (folder / SLICER).write_text(slicer_text())
    return {"legend_itksnap": ITKSNAP, "legend_slicer": SLICER}
