"""The patient text each review output may show (burned-in text, page headers).

Which fields are allowed is the setting ``review.fields`` (cacpipe.config.ReviewSettings).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..config import DISPLAY_FIELDS


def anonymised_id(patient_id: str | None, salt: str = "") -> str:
    """A short stable pseudonym for a patient id ("anon-" + 10 hex digits of SHA-256)."""
    digest = hashlib.sha256(f"{salt}\x00{patient_id or ''}".encode()).hexdigest()
    return f"anon-{digest[:10]}"


def display_items(study: dict, fields: Sequence[str], salt: str = "") -> list[tuple[str, str]]:
    """(label, value) pairs of the allowed ``fields`` (keys of DISPLAY_FIELDS), in the order given."""
    out = []
    for key in fields:
        if key == "anon_id":
            value = anonymised_id(study.get("patient_id"), salt)
        else:
            value = study.get(key)
        if key == "study_date" and value and len(str(value)) == 8 and str(value).isdigit():
            value = f"{str(value)[:4]}-{str(value)[4:6]}-{str(value)[6:]}"
        out.append((DISPLAY_FIELDS[key], "" if value is None else str(value)))
    return out
