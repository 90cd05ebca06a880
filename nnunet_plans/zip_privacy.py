"""Nothing identifying leaves in a model zip: no local paths, no case ids.

nnU-Net's export (``export_pretrained_model``) copies, next to the weights, files written for the
person who trained: every fold's ``debug.json`` (the trainer's attributes: absolute paths of the
raw, preprocessed and results folders, which name the machine, user and often the project) and
``validation/summary.json`` (per validation case the absolute paths of its prediction and
reference, whose names are the case ids, e.g. ``<PatientID>_<StudyUID>``). A model zip travels to
other sites, so :func:`scrub_model_zip` rewrites it:

- ``debug.json`` is left out (nothing reads it to run or install a model);
- each ``summary.json`` keeps its aggregate metrics (``mean``, ``foreground_mean``) and, per case,
  the metrics under a pseudonymous id (``case_000``, ``case_001``, ... in file order), without paths;

and :func:`identifying_strings` finds what remains (absolute paths in any text member or in a
checkpoint's pickled metadata): ``make train`` refuses to finish a zip in which it finds any. The
model card files, dataset.json, plans.json, dataset_fingerprint.json and the checkpoints are kept
byte for byte (the card binds their digests).
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

DROP = ("debug.json",)
ABSOLUTE_PATH = re.compile(rb"(?<![\w.])(?:/(?:home|root|work|tmp|mnt|media|data|scratch|Users|var|opt|srv|nfs|"
                           rb"gpfs|lustre|cluster|private|Volumes)/[\x21-\x7e]*|[A-Za-z]:\\\\?[\x21-\x7e]+)")


def _summary(text: bytes) -> bytes:
    data = json.loads(text)
    cases = []
    for i, case in enumerate(data.get("metric_per_case") or []):
        cases.append({"case": f"case_{i:03d}", "metrics": case.get("metrics") or {}})
    out = {k: v for k, v in data.items() if k in ("foreground_mean", "mean")}
    out["metric_per_case"] = cases
    return json.dumps(out, indent=1).encode()


def scrub_model_zip(path: str | Path) -> list[str]:
    """Rewrite the model zip ``path`` in place without the identifying parts (module docstring);
    returns the member names that were dropped or rewritten."""
    path = Path(path)
    changed: list[str] = []
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                name = info.filename
                if name.rsplit("/", 1)[-1] in DROP:
                    changed.append(name)
                    continue
                data = src.read(info)
                if name.endswith("/validation/summary.json"):
                    data = _summary(data)
                    changed.append(name)
                dst.writestr(info, data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return changed


def identifying_strings(path: str | Path, case_ids: tuple[str, ...] = ()) -> list[str]:
    """``member: string`` for every absolute path (or given case id) found in the zip's text members
    and in its checkpoints' pickled metadata; empty when the zip is clean."""
    found = []
    ids = [c.encode() for c in case_ids if c]
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            if name.endswith(".pth") and zipfile.is_zipfile(io.BytesIO(data)):
                inner = zipfile.ZipFile(io.BytesIO(data))  # torch's format: pickles + tensor blobs
                data = b"".join(inner.read(m) for m in inner.namelist() if m.endswith(".pkl"))
            elif name.endswith((".png", ".pth")):
                continue
            for m in ABSOLUTE_PATH.findall(data):
                found.append(f"{name}: {m.decode('ascii', 'replace')[:80]}")
            for c in ids:
                if c in data:
                    found.append(f"{name}: case id {c.decode()}")
    return found
