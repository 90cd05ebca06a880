"""C-STORE of the review DICOM outputs (SEG, SR, SC) to a PACS with pynetdicom.

Target syntax: ``AE@HOST:PORT`` (e.g. ``ORTHANC@10.0.0.5:4242``; IPv6 as ``AE@[::1]:104``).
One association; one presentation context per SOP class found in the files, each offering the
file's own transfer syntax plus Explicit and Implicit VR Little Endian.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CacpipeError, ConfigError, InputDataError

_TARGET = re.compile(r"^(?P<ae>[^@]+)@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]@]+):(?P<port>\d+)$")


class SendError(CacpipeError):
    """The PACS could not be reached, refused the association, or rejected an object."""


@dataclass(frozen=True)
class Target:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


def parse_target(text: str) -> Target:
    """Parse ``AE@HOST:PORT``; raise ConfigError saying exactly what is wrong."""
    m = _TARGET.match(text.strip())
    if not m:
        raise ConfigError(f"PACS target {text!r} is not AE@HOST:PORT (e.g. PACS@10.0.0.5:104)")
    ae = m["ae"]
    if len(ae) > 16:
        raise ConfigError(f"AE title {ae!r} is {len(ae)} characters; DICOM allows at most 16")
    if ae.strip() == "" or ae != ae.strip() or not all(32 <= ord(c) < 127 and c != "\\" for c in ae):
        raise ConfigError(f"AE title {ae!r} must be 1-16 printable ASCII characters, no backslash, "
                          "no leading/trailing spaces")
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise ConfigError(f"port {port} in {text!r} must be within 1..65535")
    return Target(ae, m["host"].strip("[]"), port)


def send_outputs(paths: list[str | Path], target: str, calling_ae: str = "CACPIPE", timeout_s: float = 30.0) -> dict:
    """C-STORE every file in ``paths`` to ``target`` (AE@HOST:PORT). Returns a report dict.

    Report: {"target", "sent": [{"path", "sop_class_uid", "sop_instance_uid", "status"}],
    "failed": [...same with "error"...], "contexts": [accepted SOP class UIDs]}. Raises SendError when
    no association can be made; per-file failures are listed, not raised.
    """
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    tgt = parse_target(target)
    datasets = []
    for p in paths:
        try:
            ds = pydicom.dcmread(str(p))
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a bad file
            raise InputDataError(f"cannot read DICOM file {p}: {exc}") from exc
        datasets.append((Path(p), ds))
    if not datasets:
        raise InputDataError("nothing to send: no DICOM files given")
    syntaxes: dict[str, list[str]] = {}
    for _, ds in datasets:
        ts = str(ds.file_meta.TransferSyntaxUID)
        lst = syntaxes.setdefault(str(ds.SOPClassUID), [])
        for s in (ts, ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            if s not in lst:
                lst.append(s)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class, ts in syntaxes.items():
        ae.add_requested_context(sop_class, ts)
    assoc = ae.associate(tgt.host, tgt.port, ae_title=tgt.ae_title)
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "did not answer (check host, port, firewall)"
        raise SendError(f"PACS {tgt} {why}; check that it knows AE title {calling_ae!r}")
    report: dict = {"target": str(tgt), "sent": [], "failed": [],
                    "contexts": sorted({str(c.abstract_syntax) for c in assoc.accepted_contexts})}
    try:
        for path, ds in datasets:
            item = {"path": str(path), "sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID)}
            if str(ds.SOPClassUID) not in report["contexts"]:
                report["failed"].append({**item, "error": "PACS did not accept this SOP class"})
                continue
            try:
                status = assoc.send_c_store(ds)
            except Exception as exc:  # noqa: BLE001 - network errors surface as various types
                report["failed"].append({**item, "error": str(exc)})
                continue
            code = getattr(status, "Status", None)
            if code is None:
                report["failed"].append({**item, "error": "no response (connection lost or timed out)"})
            elif code in (0x0000, 0xB000, 0xB007, 0xB006):
                report["sent"].append({**item, "status": f"0x{code:04X}"})
            else:
                report["failed"].append({**item, "error": f"C-STORE status 0x{code:04X}"})
    finally:
        assoc.release()
    return report
