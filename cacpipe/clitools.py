"""Small pieces shared by cacpipe's command lines (``cacpipe`` and ``cacpipe-labels``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import CacpipeError, InputDataError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class OneLineErrorGroup(click.Group):
    """A click group that prints cacpipe errors as one line on stderr and exits non-zero."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CacpipeError as exc:
            click.echo(f"{ctx.find_root().info_name}: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def load_json(path: str | Path, what: str, error: type[CacpipeError] = InputDataError, hint: str = "") -> dict:
    """Read a JSON file a user gave us; missing or invalid files raise ``error`` naming ``what``."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} not found: {path}" + (f" ({hint})" if hint else ""))
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON: {exc}") from exc
