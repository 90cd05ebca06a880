"""The ``cacpipe`` command line.

Each sub-command lives in its own module under ``cacpipe/commands/`` and exposes a click
object named ``command``; they are discovered here, so adding a command touches no other file.
Command modules import heavy libraries (torch, nnU-Net) inside their functions, so that
``cacpipe --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from . import __version__
from .clitools import CONTEXT_SETTINGS, OneLineErrorGroup
from .errors import EXIT_CODES

_EPILOG = ("Every command takes -i INPUT and -o OUT where it has an input and an output (positional "
           "arguments work too), and -v/-q before or after the command name.\n\n\b\nExit codes:\n"
           + "\n".join(f"  {code:>3}  {text.split(':')[0]}" for code, text in EXIT_CODES.items())
           + "\n\nDocumentation: docs/cli.md (commands, exit codes), docs/settings.md (every setting).")


@click.group(cls=OneLineErrorGroup, context_settings=CONTEXT_SETTINGS, epilog=_EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="cacpipe")
@click.option("-v", "--verbose", count=True, help="More output: -v cacpipe's progress notes and library warnings, "
                                                   "-vv everything (debug). Also accepted after the command name.")
@click.option("-q", "--quiet", is_flag=True, help="Only failures, errors and the final summary.")
def cli(verbose: int, quiet: bool) -> None:
    """Coronary artery calcium (CAC) on routine non-gated chest CT.

    Finds the heart, segments the coronary arteries and their calcium with a region-based
    nnU-Net ensemble, and reports per-artery calcium volume, Agatston score and severity,
    with overlays for radiologist review. Not a medical device: results need review.

    \b
    Start here:
      cacpipe scan -i EXPORT_OR_CT -o OUT     score a PACS export, a series folder, a zip or a NIfTI CT
      cacpipe scan -i EXPORT --dry-run        which series would be scored, and why not the others
      cacpipe demo -o OUT                     a synthetic export scored end to end
    """
    from . import logs

    logs.setup(-1 if quiet else verbose)


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
