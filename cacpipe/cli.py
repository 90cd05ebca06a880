"""The ``cacpipe`` command line.

Each core sub-command lives in its own module under ``cacpipe/commands/`` and exposes a click
object named ``command``; they are discovered here, so adding a command touches no other file.
Command modules import heavy libraries (torch, nnU-Net) inside their functions, so that
``cacpipe --help`` stays fast.

The commands of the wings (phantom, evaluation, training: optional extras, cacpipe.extras) live in
the wings and are named in :data:`WING_COMMANDS` by module path: the core never imports a wing
(an import-linter contract), a wing command is imported only when it runs, and a missing extra
is named with the pip command that installs it.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from . import __version__
from .clitools import CONTEXT_SETTINGS, OneLineErrorGroup
from .errors import EXIT_CODES

# name -> (module, attribute, extras it needs, the line `cacpipe --help` shows). Imported on use only
# (string paths: no import edge, and `cacpipe --help` loads no wing); tests/test_wings.py keeps the lines current.
WING_COMMANDS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "benchmark": ("cacpipe.benchmark.command", "command", ("evaluation",),
                  "Score DATASET (coca or orcascore) under DATASET_DIR, as downloaded, and report cacpipe's accuracy."),
    "demo": ("cacpipe.evaluation.demo", "command", ("phantom",),
             "Write a synthetic PACS export to OUT/export and scan it to OUT/results."),
    "evaluate": ("cacpipe.evaluation.command", "command", ("evaluation",),
                 "Compare PRED (cohort.csv of `cacpipe scan`, or its results folder) with REF."),
    "labels": ("label_tools.cli", "cli", ("train",),
               "Convert MASS (LUMC 2021EXP) coronary CT annotations for cacpipe retraining."),
    "phantom": ("cacpipe.phantom.command", "command", ("phantom",),
                "Synthetic chest CT phantoms with exact coronary calcium truth (no real patient)."),
}

_EPILOG = ("Every command takes -i INPUT and -o OUT where it has an input and an output (positional "
           "arguments work too), and -v/-q before or after the command name.\n\n\b\nExit codes:\n"
           + "\n".join(f"  {code:>3}  {text.split(':')[0]}" for code, text in EXIT_CODES.items())
           + "\n\nDocumentation: docs/cli.md (commands, exit codes), docs/settings.md (every setting).")


class CacpipeGroup(OneLineErrorGroup):
    """The ``cacpipe`` group: core commands registered at import, wing commands loaded on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *WING_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in WING_COMMANDS:
            module, attr, extras, _ = WING_COMMANDS[cmd_name]
            from .extras import missing

            if any(missing(extra) for extra in extras):  # checked on every call: extras come and go
                return _needs_extra(cmd_name, extras)
            if cmd_name not in self.commands:
                self.add_command(getattr(importlib.import_module(module), attr), name=cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, with the wing commands' lines from WING_COMMANDS (their modules stay unloaded)."""
        from .extras import missing

        limit = formatter.width - 6 - max(len(n) for n in self.list_commands(ctx))
        rows = []
        for name in self.list_commands(ctx):
            if name in WING_COMMANDS:
                _, _, extras, line = WING_COMMANDS[name]
                if any(missing(extra) for extra in extras):
                    line = _needs_extra(name, extras).help or line
                rows.append((name, click.utils.make_default_short_help(line, limit)))
            elif (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _needs_extra(name: str, extras: tuple[str, ...]) -> click.Command:
    """A stand-in for a wing command whose extra is not installed: it says which and how to install it."""
    spec = ",".join(extras)

    @click.command(name, help=f"(needs cacpipe[{spec}]: pip install 'cacpipe[{spec}]')",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                     "help_option_names": []})
    def stand_in() -> None:
        from .extras import require

        require(f"cacpipe {name}", extras)

    return stand_in


@click.group(cls=CacpipeGroup, context_settings=CONTEXT_SETTINGS, epilog=_EPILOG)
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
