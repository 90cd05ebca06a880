"""The ``cacpipe`` command line.

Each sub-command lives in its own module under ``cacpipe/commands/`` and exposes a click
object named ``command``; they are discovered here, so adding a command touches no other file.
Command modules import heavy libraries (torch, nnU-Net) inside their functions, so that
``cacpipe --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click

from . import __version__
from .clitools import CONTEXT_SETTINGS, OneLineErrorGroup


@click.group(cls=OneLineErrorGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="cacpipe")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Coronary artery calcium (CAC) on routine non-gated chest CT.

    Finds the heart, segments the coronary arteries and their calcium with a region-based
    nnU-Net ensemble, and reports per-artery calcium volume, Agatston score and severity,
    with overlays for radiologist review. Not a medical device: results need review.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from . import commands

    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        obj = getattr(module, "command", None)
        if isinstance(obj, click.Command):
            cli.add_command(obj, name=getattr(module, "NAME", None))


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cacpipe`` script."""
    cli.main(args=argv, prog_name="cacpipe")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
