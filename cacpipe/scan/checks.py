"""Start checks: everything that can be known before the first study is checked once, up front.

A scan that would fail every study for the same reason (no GPU, no model, an output folder that
cannot be written) stops here with one line and exit code 2, instead of failing study after
study. Settings keys are checked when the settings are parsed (cacpipe.config, strict); whether
the input holds a scorable series is known after planning (``ScanSummary.nothing_to_score``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import HeartMethod, Settings, parse_device
from ..errors import ConfigError, InputDataError
from .inputs import ScanInput
from .layout import check_output_folder


def gpu_count() -> int:
    """How many CUDA GPUs torch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_devices(device: str, jobs: int, gpus: int) -> list[str]:
    """The device of each worker process: one entry per worker (``jobs`` of them, at least one per GPU
    listed). ``gpus`` is the number of CUDA GPUs available. Raises ConfigError when a requested
    GPU does not exist.

    ``auto`` (each worker takes a GPU when there is one) and ``cpu`` need no GPU; ``cuda`` is torch's
    current GPU for every worker; ``cuda:N`` puts every worker on GPU N; ``cuda:0,1,...`` spreads
    workers over those GPUs in turn (one worker per GPU by default, so each loads the models once
    and studies queue per GPU).
    """
    device = parse_device(device)
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if device in ("auto", "cpu"):
        return [device] * jobs
    if not gpus:
        raise ConfigError(f"--device {device}: torch sees no CUDA GPU on this machine (no driver, or a CPU-only "
                          "torch); use --device cpu, or auto to take a GPU only when there is one")
    if device == "cuda":
        return ["cuda"] * jobs
    ids = [int(x) for x in device.split(":", 1)[1].split(",")]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--device {device}: a GPU is listed twice")
    missing = [i for i in ids if i >= gpus]
    if missing:
        raise ConfigError(f"--device {device}: no GPU {', '.join(map(str, missing))}; torch sees {gpus} GPU(s): "
                          + ", ".join(f"cuda:{i}" for i in range(gpus)))
    n = max(jobs, len(ids))
    return [f"cuda:{ids[i % len(ids)]}" for i in range(n)]


def local_devices(device: str, jobs: int) -> list[str]:
    """:func:`worker_devices` on this machine's GPUs (torch is imported only when a GPU is asked for)."""
    spec = parse_device(device)
    return worker_devices(spec, jobs, gpu_count() if spec.startswith("cuda") else 0)


def check_devices(device: str, jobs: int, scheduler: str | None = None) -> list[str]:
    """The device of each local worker, checked against this machine (Dask workers check their own)."""
    spec = parse_device(device)
    if scheduler:
        if "," in spec:
            raise ConfigError(f"--device {spec} spreads studies over this machine's GPUs; with --scheduler each "
                              "Dask worker runs on its own machine: give --device auto, cpu or cuda")
        return [spec]
    return local_devices(spec, jobs)


def check_output(out: Path, inp: ScanInput) -> None:
    """OUT can be created and written, and (for DICOM input) does not overlap the export; one image
    file as input may lie in OUT (:func:`cacpipe.scan.layout.check_output_folder`)."""
    check_output_folder(inp.root if inp.kind in ("dicom", "images") else None, out)


def check_model(settings: Settings):
    """The coronary model the scan will use, checked (installed, cacpipe's labels, requested folds).

    Raises ModelNotInstalledError (with how to install one) when none is installed and the demo
    model is not allowed, ModelMismatchError / ConfigError for a wrong or ambiguous model.
    """
    from ..errors import ModelNotInstalledError
    from ..segment import find_model

    seg = settings.segment
    try:
        model = find_model(seg.model, seg.model_dir, allow_demo=seg.allow_demo_model)
    except ModelNotInstalledError as exc:
        if seg.model or seg.allow_demo_model:
            raise
        raise ModelNotInstalledError(f"{exc}; or, to try cacpipe without one, --allow-demo-model (a phantom-"
                                     "trained model, NOT FOR CLINICAL USE)") from exc
    if seg.folds is not None:
        missing = sorted(set(seg.folds) - set(model.folds))
        if missing:
            raise ModelNotInstalledError(f"model {model.full_name} has folds {list(model.folds)}; "
                                         f"--folds asks for {list(seg.folds)} (missing {missing})")
    return model


def check_heart(settings: Settings) -> None:
    """With ``heart.method = totalsegmentator`` its weights must be installed (auto falls back, flagged)."""
    if settings.heart.method == HeartMethod.TOTALSEGMENTATOR:
        from ..heart import require_weights

        home = settings.heart.totalseg_home
        require_weights(None if home is None else Path(home), settings.heart.fast)


def check_send(target: str | None, timeout_s: float = 5.0) -> None:
    """With ``--send``, the PACS answers a C-ECHO now (within an overall deadline), so that a wrong
    address or a peer that is down stops the scan at start instead of after the first analysis."""
    if not target:
        return
    from ..review.send import SendError, echo

    try:
        echo(target, timeout_s=timeout_s)
    except SendError as exc:
        raise ConfigError(f"--send {target}: {exc}; check the PACS (or scan without --send and send later with "
                          "`cacpipe review send OUT --to AE@HOST:PORT`)") from None


def check_input(inp: ScanInput) -> None:
    """The input can be read (its content is checked by planning)."""
    if not os.access(inp.path, os.R_OK):
        raise InputDataError(f"input {inp.path} cannot be read (permissions)")


def _weak(model) -> list[str]:
    from ..errors import CacpipeError
    from ..segment.card import weak_points

    try:
        return weak_points(model.card())
    except (CacpipeError, OSError, ValueError):
        return []


@dataclass
class StartReport:
    """What the start checks found, for the console and cacpipe.log."""

    devices: list[str]
    model: object | None = None  # InstalledModel, when the cacpipe pipeline runs
    folds: tuple[int, ...] | None = None  # the folds asked for (None: all of the model's)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        from collections import Counter

        per = Counter(self.devices)
        names = ", ".join(f"{d} x{c}" if c > 1 else d for d, c in per.items())
        if "auto" in per:
            names = names.replace("auto", "auto (" + ("cuda" if gpu_count() else "cpu: torch sees no CUDA GPU") + ")")
        n = len(self.devices)
        out = [f"device: {names}; {n} worker{'s' if n != 1 else ''}"]
        if self.model is not None:
            m = self.model
            demo = "  [phantom demo model: NOT FOR CLINICAL USE]" if m.is_demo else ""
            folds = ",".join(map(str, self.folds or m.folds))
            out.append(f"model: {m.full_name} (folds {folds} of {len(m.folds)}){demo}")
            weak = _weak(m)
            if weak:
                out.append(f"model warning: its cross-validation is below the install floor ({'; '.join(weak)})")
        return out + self.notes


def start_checks(inp: ScanInput, out: Path, settings: Settings, jobs: int = 1, scheduler: str | None = None,
                 pipeline: bool = True) -> StartReport:
    """Run every check that does not need a study; raise the first failure (a CacpipeError, exit 2).

    ``pipeline`` is False when a custom ``--analyse`` function replaces the cacpipe pipeline (then
    its model and heart locator are not cacpipe's business).
    """
    check_input(inp)
    new_out = not out.exists()
    check_output(out, inp)  # creates OUT
    try:
        devices = check_devices(settings.device, jobs, scheduler)
        check_send(settings.review.send)
        model = None
        if pipeline:
            model = check_model(settings)
            check_heart(settings)
    except BaseException:
        if new_out:  # a refused scan leaves no empty OUT behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    notes = []
    if pipeline:
        if settings.heart.method == HeartMethod.AUTO:
            from ..heart import totalseg_status

            if not totalseg_status(None if settings.heart.totalseg_home is None else Path(settings.heart.totalseg_home),
                                   settings.heart.fast)["installed"]:
                notes.append("heart locator: TotalSegmentator weights not installed, the classical fallback locator "
                             "is used (flagged in every result; `cacpipe heart --status` says how to install)")
    return StartReport(devices=devices, model=model, folds=settings.segment.folds, notes=notes)
