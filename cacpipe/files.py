"""The file-permission policy for outputs that hold patient data (docs/privacy.md).

Every file cacpipe writes with patient data (result.json, labels, manifest.json, cohort.csv,
review pages, overlay PNGs, DICOM SEG/SR/SC, the cohort index) is owner-only: files ``0600``,
the folders cacpipe creates for them ``0700``, whatever the process umask. A folder that already
existed keeps its permissions (it is the user's). To share results, grant access deliberately
(``chmod -R g+rX OUT`` for a group).

The per-installation anonymisation secret follows the same policy (cacpipe.review.options).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dir(path: str | Path) -> Path:
    """Create ``path`` and any missing parents owner-only (0700); existing folders are left as they are."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by another process: not ours to change
        os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask; the policy is not
    return path


def protect(paths: Iterable[str | Path]) -> None:
    """Apply the policy to files (0600) and folders (0700) cacpipe has just written."""
    for p in paths:
        p = Path(p)
        if p.is_symlink():
            continue  # never follow links: we only change what we wrote
        if p.is_dir():
            os.chmod(p, DIR_MODE)
        elif p.exists():
            os.chmod(p, FILE_MODE)


def protect_tree(root: str | Path) -> None:
    """Apply the policy to ``root`` (a folder cacpipe wrote, such as one study's output) and all below it."""
    root = Path(root)
    protect([root])
    for dirpath, dirnames, filenames in os.walk(root):
        protect(Path(dirpath) / n for n in (*dirnames, *filenames))


def write_private_text(path: str | Path, text: str) -> Path:
    """Write a text file (UTF-8) owner-only from the start (no moment in which others could read it)."""
    path = Path(path)
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.chmod(path, FILE_MODE)  # an existing file keeps its mode through O_TRUNC: reset it
    return path
