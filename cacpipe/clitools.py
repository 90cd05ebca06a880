"""Small pieces shared by cacpipe's command lines (``cacpipe`` and ``cacpipe-labels``)."""

from __future__ import annotations

import click

from .errors import CacpipeError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class OneLineErrorGroup(click.Group):
    """A click group that prints cacpipe errors as one line on stderr and exits non-zero."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CacpipeError as exc:
            click.echo(f"{ctx.find_root().info_name}: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
