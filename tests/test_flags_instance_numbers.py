"""Flags name slices as PACS does ("image 42 (z -3.0 mm)"), not by internal 0-based indices, and
the valve-calcium flag says where it looked (issue 27, item 11; the post-processing flags are
checked in test_postprocess.py)."""

from __future__ import annotations

import re

import numpy as np

from cacpipe import flags as F
from cacpipe.volume import Volume


def _numbered(vol: Volume) -> Volume:
    """The volume with InstanceNumbers that run backwards from 500 and table positions (as assembly sets them)."""
    out = vol.with_array(vol.array)
    n = vol.shape[0]
    out.meta.update(instance_numbers=[500 - k for k in range(n)], slice_positions_mm=[-100.0 + 2 * k for k in range(n)])
    return out


def test_volume_slice_reference_speaks_instance_numbers():
    v = _numbered(Volume(np.zeros((5, 2, 2), np.int16), (2.0, 1.0, 1.0)))
    assert v.slice_reference(3) == "image 497 (z -94.0 mm)"
    assert v.slice_reference(2.6) == "image 497 (z -94.0 mm)"
    assert Volume(np.zeros((5, 2, 2)), (2.0, 1.0, 1.0)).slice_reference(3) == "slice 4"


def test_valve_flag_names_the_image_and_position_of_what_it_found():
    from test_phantom_v2 import small

    from cacpipe.phantom.v2 import generate as generate_v2
    from cacpipe.quant.quality import quality_flags

    ph = generate_v2(small(1006, plaques=(), findings={"aortic_valve_calcium_mm3": 200.0}))
    ct = _numbered(ph.ct)
    valve = [f for f in quality_flags(ct, ph.labels) if f.code == F.VALVE_CALCIUM_SUSPECTED]
    assert valve
    m = re.search(r"the largest at image (\d+) \(z (-?[\d.]+) mm\), row (\d+), column (\d+)", valve[0].message)
    assert m, valve[0].message
    k = 500 - int(m[1])
    assert float(m[2]) == -100.0 + 2 * k
    y, x = int(m[3]) - 1, int(m[4]) - 1
    assert ct.array[k, y - 1:y + 2, x - 1:x + 2].max() >= 130  # calcium is where the flag says
    assert ph.labels.array[k, y, x] == 0  # and it is not coronary
