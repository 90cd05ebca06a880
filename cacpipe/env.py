"""Every environment variable cacpipe reads or sets, in one place.

- ``CACPIPE_MODEL_DIR``: installed coronary models (default ``~/.cacpipe/models``);
- ``CACPIPE_CACHE_DIR``: unpacked demo model and other caches (default ``~/.cache/cacpipe``);
- ``CACPIPE_CONFIG_DIR``: per-installation settings and secrets such as the anonymisation salt
  (default ``~/.config/cacpipe``);
- ``TOTALSEG_WEIGHTS_PATH`` / ``TOTALSEG_HOME_DIR``: where TotalSegmentator's weights live, resolved
  the way TotalSegmentator resolves them;
- ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` and nnU-Net's worker counts: set for
  training and restored around TotalSegmentator, which overwrites them;
- ``OMP_NUM_THREADS`` and friends: set in batch worker processes so studies do not fight for cores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

MODEL_DIR = "CACPIPE_MODEL_DIR"
CACHE_DIR = "CACPIPE_CACHE_DIR"
CONFIG_DIR = "CACPIPE_CONFIG_DIR"
TOTALSEG_HOME = "TOTALSEG_HOME_DIR"
TOTALSEG_WEIGHTS = "TOTALSEG_WEIGHTS_PATH"
NNUNET_PATHS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def get(name: str, default: str | None = None) -> str | None:
    """The value of one environment variable (the only direct read of os.environ in cacpipe)."""
    return os.environ.get(name, default)


def model_dir(explicit: str | Path | None = None) -> Path:
    """Installed models: ``explicit``, else $CACPIPE_MODEL_DIR, else ~/.cacpipe/models."""
    return Path(explicit if explicit is not None else get(MODEL_DIR) or "~/.cacpipe/models").expanduser()


def cache_dir() -> Path:
    """Caches (the unpacked demo model): $CACPIPE_CACHE_DIR, else ~/.cache/cacpipe."""
    return Path(get(CACHE_DIR) or "~/.cache/cacpipe").expanduser()


def config_dir() -> Path:
    """Per-installation settings and secrets: $CACPIPE_CONFIG_DIR, else ~/.config/cacpipe."""
    return Path(get(CONFIG_DIR) or "~/.config/cacpipe").expanduser()


def totalseg_home(explicit: str | Path | None = None) -> Path:
    """TotalSegmentator's home folder: ``explicit``, else $TOTALSEG_HOME_DIR, else ~/.totalsegmentator."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if get(TOTALSEG_HOME):
        return Path(get(TOTALSEG_HOME)).expanduser()  # type: ignore[arg-type]
    home = Path("/tmp") if str(Path.home()) == "/" else Path.home()
    return home / ".totalsegmentator"


def totalseg_weights_dir(explicit_home: str | Path | None = None) -> Path:
    """Folder holding TotalSegmentator's ``Dataset*`` model folders.

    An explicit home wins (``home/nnunet/results``); else $TOTALSEG_WEIGHTS_PATH, else
    ``$TOTALSEG_HOME_DIR/nnunet/results``, else ``~/.totalsegmentator/nnunet/results``.
    """
    if explicit_home is None and get(TOTALSEG_WEIGHTS):
        return Path(get(TOTALSEG_WEIGHTS)).expanduser()  # type: ignore[arg-type]
    return totalseg_home(explicit_home) / "nnunet" / "results"


def nnunet_path(name: str) -> Path:
    """One of nnU-Net's folders (``nnUNet_raw`` / ``_preprocessed`` / ``_results``); must be set."""
    value = get(name)
    if not value:
        from .errors import ConfigError

        raise ConfigError(f"${name} is not set (cacpipe sets it for training; see nnunet_plans/README.md)")
    return Path(value)


@contextlib.contextmanager
def scoped(values: Mapping[str, str | None], restore: tuple[str, ...] = ()) -> Iterator[None]:
    """Set ``values`` (None removes a variable) for the duration of the block, then restore them and
    the variables named in ``restore`` (which the code inside may overwrite, as TotalSegmentator does)."""
    keys = tuple(dict.fromkeys((*values, *restore)))
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def set_default(name: str, value: str) -> None:
    """Set a variable unless the user already did (e.g. nnU-Net's worker counts)."""
    os.environ.setdefault(name, value)


def set_value(name: str, value: str) -> None:
    """Set a variable for this process and its children (training sets nnU-Net's folders)."""
    os.environ[name] = value


def limit_threads(threads: int) -> None:
    """Keep a worker's math libraries to ``threads`` cores (several studies run at once)."""
    for var in THREAD_VARS:
        set_default(var, str(threads))


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """A copy of the environment with ``extra`` added, for a subprocess."""
    return {**os.environ, **extra}
