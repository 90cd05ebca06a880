"""Small pieces shared by cacpipe's command lines (``cacpipe`` and ``cacpipe-labels``).

- :class:`OneLineErrorGroup`: cacpipe errors become one line on stderr and the error's exit code
  (cacpipe.errors.EXIT_CODES); Ctrl-C, SIGTERM and SIGHUP exit 130; ``-v``/``-q`` may be given after the sub-command too.
- :class:`SectionedCommand` / :func:`option`: ``--help`` with the options in titled sections.
- :func:`one_of`: the ``-i/-o`` convention next to the positional arguments commands always had.
"""

from __future__ import annotations

import contextlib
import errno
import re
from pathlib import Path

import click

from .errors import EXIT_INTERRUPTED, EXIT_NO_SPACE, CacpipeError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # disk full, quota, file-size limit (RLIMIT_FSIZE)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
IO_SECTION = "Input and output"
VERBOSITY_TOKEN = re.compile(r"^(-v+|--verbose|-q|--quiet)$")


class OneLineErrorGroup(click.Group):
    """A click group that prints cacpipe errors as one line on stderr and exits with their code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `cacpipe scan -v ...` = `cacpipe -v scan ...`: verbosity flags may follow the sub-command.
        if any(p.name == "verbose" for p in self.params) and ctx.parent is None:
            cut = args.index("--") if "--" in args else len(args)
            flags = [a for a in args[:cut] if VERBOSITY_TOKEN.match(a)]
            args = flags + [a for a in args[:cut] if not VERBOSITY_TOKEN.match(a)] + args[cut:]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            with stop_on_signals():
                return super().invoke(ctx)
        except CacpipeError as exc:
            click.echo(f"{ctx.find_root().info_name}: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(f"{ctx.find_root().info_name}: interrupted; run the same command again to resume", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            click.echo(f"{ctx.find_root().info_name}: error: {exc.strerror or 'no space left'}{where}; free space (or "
                       "raise the quota or file-size limit) and run the same command again (a scan resumes)", err=True)
            ctx.exit(EXIT_NO_SPACE)


STOP_SIGNALS = ("SIGTERM", "SIGHUP")
"""What systemd, SLURM, ``docker stop`` and a closed terminal send: handled like Ctrl-C."""


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, as Ctrl-C does:
    the scan stops its workers, saves the manifest, releases its lock, and the next run resumes
    (a study in progress is written to a temporary folder and never counts). Elsewhere (another
    thread, a platform without them) nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    saved = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            saved[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


class SectionedOption(click.Option):
    """An option that belongs to a titled section of its command's ``--help``."""

    def __init__(self, *args, section: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.section = section


def option(section: str, *param_decls: str, **attrs):
    """``click.option`` shown under ``section`` in the help of a :class:`SectionedCommand`."""
    return click.option(*param_decls, cls=SectionedOption, section=section, **attrs)


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists options by section, in the order the sections first appear."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            rec = param.get_help_record(ctx)
            if rec is None or isinstance(param, click.Argument):  # arguments: in the usage line and text
                continue
            title = getattr(param, "section", None) or "Other options"
            sections.setdefault(title, []).append(rec)
        other = sections.pop("Other options", None)
        if other:
            sections["Other options"] = other
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def one_of(positional, given, what: str, flag: str):
    """The value of an argument that may come positionally or as ``flag`` (e.g. ``-i/--input``);
    both at once is a usage error, neither returns None."""
    if positional is not None and given is not None and Path(str(positional)) != Path(str(given)):
        raise click.UsageError(f"{what} given twice ({positional} and {flag} {given}); give it once")
    return given if given is not None else positional


def require(value, what: str, flag: str):
    """``value`` or a usage error naming ``flag``."""
    if value is None:
        raise click.UsageError(f"missing {what}: give {flag}")
    return value

