"""The optional extras (wings) of the cacpipe distribution and whether each is installed.

The core (``pip install cacpipe``) scans studies. The wings ship in the same wheel but need the
dependencies of their extra: ``cacpipe[phantom]`` (synthetic CT, ``cacpipe demo``/``phantom``),
``cacpipe[evaluation]`` (``cacpipe evaluate``/``benchmark``), ``cacpipe[train]`` (``label_tools``,
``nnunet_plans``: ``cacpipe labels``, ``make train``). A wing command checks its extra first, so a
missing one is named with the pip command that installs it, not met as a bare ImportError later.
"""

from __future__ import annotations

import re
from importlib import metadata

from .errors import ConfigError

DISTRIBUTION = "cacpipe"
EXTRAS: tuple[str, ...] = ("phantom", "evaluation", "train")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(extra: str) -> list[str]:
    """The distribution names an extra adds (from the installed metadata; [] when cacpipe is not installed)."""
    try:
        reqs = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:  # running from a source tree: nothing to check against
        return []
    out = []
    for req in reqs:
        m_extra, m_name = _EXTRA.search(req), _NAME.match(req)
        if m_extra and m_name and m_extra.group(1) == extra:
            out.append(m_name.group(1))
    return out


def _installed(name: str) -> bool:
    try:
        metadata.distribution(_canonical(name))
    except metadata.PackageNotFoundError:
        try:  # some metadata keeps the project's own spelling
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return False
    return True


def missing(extra: str) -> list[str]:
    """Distributions of ``extra`` that are not installed (empty: the extra is complete)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; cacpipe has {', '.join(EXTRAS)}")
    return [name for name in requirements(extra) if not _installed(name)]


def require(what: str, extras: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` naming the extras ``what`` needs when any of them is incomplete."""
    lacking = {extra: gone for extra in extras if (gone := missing(extra))}
    if lacking:
        names = ", ".join(sorted({n for gone in lacking.values() for n in gone}))
        spec = ",".join(extras)
        raise ConfigError(f"{what} needs the {' and '.join(lacking)} extra{'s' if len(lacking) > 1 else ''} "
                          f"(not installed: {names}): pip install 'cacpipe[{spec}]'")
