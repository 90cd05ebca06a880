"""C-STORE of the review DICOM outputs (SEG, SR, SC) to a PACS with pynetdicom, and C-ECHO.

Target syntax: ``AE@HOST:PORT`` (e.g. ``ORTHANC@10.0.0.5:4242``; IPv6 as ``AE@[::1]:104``).
One association; one presentation context per SOP class found in the files, each offering the
file's own transfer syntax plus Explicit and Implicit VR Little Endian.

Every association has deadlines as well as pynetdicom's per-message timeouts: a peer that answers
with a malformed PDU (pynetdicom then waits for bytes that never come) is aborted when the
connection and negotiation take more than two timeouts, or any later step (one object, the
release) more than one, so a send never hangs a batch (:func:`deadline_for`, ``_within``).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import EXIT_STUDY_FAILED, CacpipeError, ConfigError, InputDataError

_TARGET = re.compile(r"^(?P<ae>[^@]+)@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]@]+):(?P<port>\d+)$")
VERIFICATION = "1.2.840.10008.1.1"


class SendError(CacpipeError):
    """The PACS could not be reached, refused the association, or rejected an object."""


class SendPending(SendError):
    """Some study's outputs are still not stored (the results are kept): exit 1, as a failed study."""

    exit_code = EXIT_STUDY_FAILED


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


def deadline_for(timeout_s: float, n_objects: int) -> float:
    """The longest one association may take (s): two timeouts for the connection and negotiation,
    one per object (``n_objects`` 0: the negotiation's own deadline)."""
    return timeout_s * (2 + max(0, n_objects))


def _new_ae(calling_ae: str, timeout_s: float):
    import logging

    from pynetdicom import AE

    from .. import logs

    if logs.verbosity() < 2:  # every failure is restated in one line of ours; its own ERROR lines only with -vv
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    return ae


class _Deadline:
    """A deadline that each completed step moves forward (``tick``): a peer that stops answering at
    any step is given up after ``step_s``, a working one is never cut off mid-send."""

    def __init__(self, first_s: float, step_s: float):
        import time

        self._time = time.monotonic
        self.step_s = step_s
        self.at = self._time() + first_s

    def tick(self) -> None:
        self.at = self._time() + self.step_s

    def left(self) -> float:
        return self.at - self._time()


def _within(deadline_s: float, ae, work, what: str, step_s: float | None = None):
    """Run ``work(tick)`` in a helper thread; when the deadline passes (``deadline_s`` for the start,
    ``step_s`` after each ``tick()``), abort every association of ``ae`` and raise SendError
    (pynetdicom cannot be interrupted from outside otherwise)."""
    box: dict = {}
    deadline = _Deadline(deadline_s, step_s if step_s is not None else deadline_s)

    def run() -> None:
        try:
            box["value"] = work(deadline.tick)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    th = threading.Thread(target=run, name="cacpipe-dicom-association", daemon=True)
    th.start()
    while th.is_alive() and deadline.left() > 0:
        th.join(min(deadline.left(), 0.5))
    if th.is_alive():
        for assoc in list(getattr(ae, "active_associations", [])):
            try:
                assoc.abort()
            except Exception:  # noqa: BLE001 - best effort: the thread is a daemon either way
                pass
        th.join(2.0)
        raise SendError(f"{what} did not finish within {deadline_s:g} s (the peer answers but not as DICOM, or "
                        "too slowly); aborted" if step_s is None else
                        f"{what} stalled: a step took more than {max(deadline_s, step_s):g} s (the peer answers but "
                        "not as DICOM, or too slowly); aborted")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _associate(ae, tgt: Target, calling_ae: str):
    assoc = ae.associate(tgt.host, tgt.port, ae_title=tgt.ae_title)
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "did not answer (check host, port, firewall)"
        raise SendError(f"PACS {tgt} {why}; check that it knows AE title {calling_ae!r}")
    return assoc


def echo(target: str, calling_ae: str = "CACPIPE", timeout_s: float = 10.0) -> None:
    """C-ECHO ``target`` (AE@HOST:PORT) within an overall deadline; raise SendError when it does not
    answer with success."""
    tgt = parse_target(target)
    ae = _new_ae(calling_ae, timeout_s)
    ae.add_requested_context(VERIFICATION)

    def work(tick) -> None:
        assoc = _associate(ae, tgt, calling_ae)
        try:
            status = assoc.send_c_echo()
        finally:
            if assoc.is_established:
                assoc.release()
        code = getattr(status, "Status", None)
        if code != 0x0000:
            raise SendError(f"PACS {tgt} did not confirm C-ECHO (" + ("no response" if code is None
                                                                     else f"status 0x{code:04X}") + ")")

    _within(deadline_for(timeout_s, 0), ae, work, f"C-ECHO to {tgt}")


def dicom_outputs(outputs: dict, study_dir: Path) -> list[Path]:
    """The DICOM files (SEG, SR, SC) among a result's ``outputs`` (paths relative to ``study_dir``)."""
    files = [study_dir / outputs[k] for k in ("seg", "sr") if isinstance(outputs.get(k), str)]
    files += [study_dir / p for p in outputs.get("sc") or [] if isinstance(p, str)]
    return files


def send_outputs(paths: list[str | Path], target: str, calling_ae: str = "CACPIPE", timeout_s: float = 30.0,
                 deadline_s: float | None = None) -> dict:
    """C-STORE every file in ``paths`` to ``target`` (AE@HOST:PORT). Returns a report dict.

    Report: {"target", "sent": [{"path", "sop_class_uid", "sop_instance_uid", "status"}],
    "failed": [...same with "error"...], "contexts": [accepted SOP class UIDs]}. Raises SendError when
    no association can be made or the association outlives ``deadline_s`` (default
    :func:`deadline_for`); per-file failures are listed, not raised.
    """
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

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
    ae = _new_ae(calling_ae, timeout_s)
    for sop_class, ts in syntaxes.items():
        ae.add_requested_context(sop_class, ts)
    report: dict = {"target": str(tgt), "sent": [], "failed": [], "contexts": []}

    def work(tick) -> None:
        assoc = _associate(ae, tgt, calling_ae)
        tick()
        report["contexts"] = sorted({str(c.abstract_syntax) for c in assoc.accepted_contexts})
        try:
            for path, ds in datasets:
                tick()
                item = {"path": str(path), "sop_class_uid": str(ds.SOPClassUID),
                        "sop_instance_uid": str(ds.SOPInstanceUID)}
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
            tick()
            if assoc.is_established:
                assoc.release()

    if deadline_s is not None:  # one fixed deadline for the whole association
        _within(deadline_s, ae, work, f"the association with {tgt}")
    else:  # connection and negotiation: 2 timeouts; then each object and the release: 1 timeout each
        _within(deadline_for(timeout_s, 0), ae, work, f"the association with {tgt}", step_s=timeout_s)
    return report
