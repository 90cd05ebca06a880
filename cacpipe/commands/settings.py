"""``cacpipe settings``: every setting of the configuration tree, its type, default and meaning."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Print the default settings as a JSON file to start from.")
@click.option("--markdown", is_flag=True, help="Print the reference table (docs/settings.md is generated from it).")
@click.option("--check", "check_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Validate a settings JSON file (unknown keys and wrong types are errors).")
def command(as_json: bool, markdown: bool, check_file: Path | None) -> None:
    """List the settings `cacpipe scan --settings FILE.json` accepts (nested JSON, strict)."""
    from ..config import Settings, settings_markdown
    from ..errors import ConfigError
    from ..jsonfile import read_json

    if check_file is not None:
        s = Settings().merged(read_json(check_file, "settings file", ConfigError))
        click.echo(f"{check_file}: valid")
        click.echo(json.dumps(s.to_dict(), indent=2))
        return
    if as_json:
        click.echo(json.dumps(Settings().to_dict(), indent=2))
        return
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    for key, t, default, help_ in Settings.describe():
        click.echo(f"{key} = {default}  ({t})\n    {help_}")
