"""Was a series lossy-compressed? From its headers: LossyImageCompression and the transfer syntax.

Lossy compression (JPEG baseline, lossy JPEG 2000, ...) smooths small bright spots: calcium's peak
HU and the area above 130 HU change, and with them Agatston (by 78 on one probe of issue 27). The
series is still scored; the flag ``lossy_compression`` says that its numbers may differ from the
original images'. Images once lossy-compressed keep ``LossyImageCompression = 01`` even when they
are stored uncompressed again (DICOM PS3.3 C.7.6.1.1.5), so the tag is read as well as the syntax.
"""

from __future__ import annotations

from collections.abc import Sequence

import pydicom

from ..flags import LOSSY_COMPRESSION, Flag

LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
}
"""Transfer syntaxes that are always lossy."""
MAYBE_LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.93": "JPEG 2000 Part 2",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
}
"""Transfer syntaxes that may be lossy or lossless: lossy unless LossyImageCompression says 00."""


def _lossy_reason(ds: pydicom.Dataset) -> str | None:
    """Why one image counts as lossy-compressed (None: it does not)."""
    tag = str(ds.get("LossyImageCompression", "") or "").strip()
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts in LOSSY_SYNTAXES:
        return f"transfer syntax {LOSSY_SYNTAXES[ts]}"
    if ts in MAYBE_LOSSY_SYNTAXES and tag != "00":
        return f"transfer syntax {MAYBE_LOSSY_SYNTAXES[ts]}" + ("" if tag else " (LossyImageCompression not set)")
    if tag == "01":
        return "LossyImageCompression 01"
    return None


def _values(ds: pydicom.Dataset, name: str) -> str:
    v = ds.get(name)
    if v is None or v == "":
        return ""
    return "\\".join(str(x) for x in v) if isinstance(v, (list, tuple, pydicom.multival.MultiValue)) else str(v)


def lossy_flag(datasets: Sequence[pydicom.Dataset]) -> Flag | None:
    """The ``lossy_compression`` warning for a series' headers, or None when no image was lossy."""
    lossy = [(ds, why) for ds in datasets if (why := _lossy_reason(ds))]
    if not lossy:
        return None
    ds, why = lossy[0]
    detail = [why]
    ratio, method = _values(ds, "LossyImageCompressionRatio"), _values(ds, "LossyImageCompressionMethod")
    if ratio:
        detail.append(f"ratio {ratio}:1")
    if method:
        detail.append(f"method {method}")
    return Flag(LOSSY_COMPRESSION,
                f"{len(lossy)} of {len(datasets)} images were lossy-compressed ({', '.join(detail)}): compression "
                "changes small dense spots, so calcium scores may differ from the original images'; score the "
                "lossless original when the PACS has it", "warning")
