"""Sending finished studies' DICOM outputs (SEG, SR, SC) to a PACS, without ever losing a result.

A study is analysed and written first; sending comes after, in the scanning process, and its
outcome is recorded next to the result, never instead of it: the manifest entry and result.json
(``pipeline.send``) get a send state ::

    {"target": "PACS@10.0.0.5:104", "state": "sent" | "pending", "error": "", "attempts": 2,
     "time": "...", "sent": [SOP Instance UIDs stored], "files": 5}

A study whose send failed stays ``done`` (its numbers, page and files are complete) with state
``pending``; ``cacpipe review send OUT`` (or the next ``scan --send``) sends what is pending: only
the objects not yet stored, so a new SR after ``review apply`` goes out on its own. Once one
association fails in a run, the peer counts as down for the rest of that run: the other studies
are marked pending at once instead of each waiting for the network timeout.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import CacpipeError, InputDataError
from .layout import RESULT, now, one_line, write_atomic

log = logging.getLogger(__name__)
SENT, PENDING, NOTHING = "sent", "pending", "nothing"  # nothing: the study has no DICOM outputs to send


def _read_result(study_dir: Path) -> dict:
    try:
        data = json.loads((study_dir / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{study_dir / RESULT} is unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise InputDataError(f"{study_dir / RESULT} is not a study result")
    return data


def study_files(study_dir: Path, result: dict) -> list[Path]:
    """The DICOM outputs a result lists (SEG, SR, SC), as paths."""
    from ..review.send import dicom_outputs

    return dicom_outputs(result.get("outputs") or {}, study_dir)


def send_state(result: dict) -> dict | None:
    st = (result.get("pipeline") or {}).get("send")
    return st if isinstance(st, dict) and "state" in st else None


def needs_send(result: dict, target: str | None) -> str | None:
    """The target this study's outputs still have to reach (None: nothing to send).

    ``target`` None: the target of a pending send state; else ``target`` unless everything listed
    was already stored there."""
    st = send_state(result) or {}
    if target is None:
        return st.get("target") if st.get("state") == PENDING else None
    if st.get("target") == target and st.get("state") in (SENT, NOTHING):
        return None
    return target


class Sender:
    """Sends studies to one target per call; remembers a peer that failed in this run."""

    def __init__(self, calling_ae: str = "CACPIPE", timeout_s: float = 30.0):
        self.calling_ae, self.timeout_s = calling_ae, timeout_s
        self.down: dict[str, str] = {}  # target -> why it counts as down for the rest of this run
        self.sent = self.pending = self.nothing = 0

    def deliver(self, study_dir: Path, target: str) -> dict:
        """Send the study's outputs not yet stored at ``target``; record and return the send state.
        Never raises for a network problem (the state says it)."""
        from ..review.send import send_outputs

        study_dir = Path(study_dir)
        result = _read_result(study_dir)
        old = send_state(result) or {}
        done = set(old.get("sent") or []) if old.get("target") == target else set()
        files = study_files(study_dir, result)
        state = {"target": target, "state": PENDING, "error": "", "attempts": int(old.get("attempts", 0)) + 1,
                 "time": now(), "sent": sorted(done), "files": len(files)}
        try:
            todo = [f for f in files if _sop_uid(f) not in done]
            if not files:
                state.update(state=NOTHING, error="no DICOM outputs to send (--no-dicom-out, or no source DICOM "
                                                  "headers: an image-file input, or blank UIDs)")
            elif target in self.down:
                state.update(error=f"not tried: {self.down[target]}", attempts=state["attempts"] - 1)
            elif not todo:
                state["state"] = SENT
            else:
                report = send_outputs(todo, target, calling_ae=self.calling_ae, timeout_s=self.timeout_s)
                state["sent"] = sorted(done | {x["sop_instance_uid"] for x in report["sent"]})
                if report["failed"]:
                    state["error"] = "; ".join(f"{Path(x['path']).name}: {x['error']}" for x in report["failed"])[:500]
                else:
                    state["state"] = SENT
        except CacpipeError as exc:  # no association, deadline, unreadable file: pending, with the reason
            state["error"] = one_line(exc)
            if not isinstance(exc, InputDataError):
                self.down[target] = one_line(exc, 200)
        except Exception as exc:  # noqa: BLE001 - a network library failure must not cost the result
            state["error"] = one_line(f"{type(exc).__name__}: {exc}")
            self.down[target] = state["error"]
        if state["state"] == SENT:
            self.sent += 1
        elif state["state"] == NOTHING:
            self.nothing += 1
        else:
            self.pending += 1
        result.setdefault("pipeline", {})["send"] = state
        write_atomic(study_dir / RESULT, json.dumps(result, indent=2, default=str))
        return state


def _sop_uid(path: Path) -> str:
    import pydicom

    try:
        return str(pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a bad file
        raise InputDataError(f"cannot read DICOM output {path}: {exc}") from exc


def state_line(key: str, state: dict) -> str:
    """One console line for a study's send."""
    if state["state"] == SENT:
        return f"sent    {key} -> {state['target']} ({len(state.get('sent') or [])} object(s))"
    if state["state"] == NOTHING:
        return f"nothing {key}: {state['error']}"
    return f"PENDING {key} -> {state['target']}: {state.get('error') or 'not sent'}"


def deliver_entry(sender: Sender, out: Path, key: str, entry: dict, target: str | None) -> dict | None:
    """Send one manifest entry's study when it needs it; record the state in ``entry``; None when
    nothing was to be sent."""
    if entry.get("status") != "done" or not entry.get("result"):
        return None
    study_dir = (out / entry["result"]).parent
    try:
        to = needs_send(_read_result(study_dir), target)
    except InputDataError as exc:
        log.warning("%s: %s", key, exc)
        return None
    if to is None:
        return None
    state = sender.deliver(study_dir, to)
    entry["send"] = {k: v for k, v in state.items() if k != "sent"}
    return state


def send_pending(out: Path, target: str | None = None, calling_ae: str = "CACPIPE", timeout_s: float = 30.0,
                 echo_line=None) -> tuple[int, int]:
    """Send every done study of the scan in ``out`` that still needs it (:func:`needs_send`), under
    the scan lock; update the manifest and each result.json. Returns (sent, still pending);
    ``echo_line`` gets one line per study."""
    from .manifest import ManifestWriter, ScanLock, load_manifest

    with ScanLock(out):
        manifest = load_manifest(out)
        sender = Sender(calling_ae, timeout_s)
        writer = ManifestWriter(out, manifest)
        try:
            for key, entry in sorted(manifest["studies"].items()):
                state = deliver_entry(sender, out, key, entry, target)
                if state is not None and echo_line is not None:
                    echo_line(state_line(key, state))
        finally:
            writer.save()
    return sender.sent, sender.pending
