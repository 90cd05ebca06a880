"""``cacpipe list``: which series of an input would be scored, and why every other one would not."""

from __future__ import annotations

from pathlib import Path

import click

from ..clitools import IO_SECTION, SectionedCommand, one_of, option, require
from .scan import (
    INPUT_OPTIONS,
    SELECTION_OPTIONS,
    apply,
    print_dry_run,
    selection_given,
    settings_from_options,
)

NAME = "list"


@click.command("list", cls=SectionedCommand)
@apply(INPUT_OPTIONS)
@option(IO_SECTION, "-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Also write OUT/dry_run.json; an existing scan folder adds each study's last status.")
@option(IO_SECTION, "--json", "as_json", is_flag=True, help="Print the listing as JSON (schema cacpipe.preview/1).")
@option(IO_SECTION, "--no-progress", is_flag=True, help="No progress bar while headers are read.")
@apply(SELECTION_OPTIONS)
@click.pass_context
def command(ctx: click.Context, export: Path | None, input_path: Path | None, patient_id: str | None,
            ids_csv: Path | None, out: Path | None, as_json: bool, no_progress: bool, min_slices: int | None, min_spacing: float | None,
            max_spacing: float | None, max_missing_slices: int | None, preferred_kernel: str | None,
            allow_contrast: bool | None, settings_file: Path | None) -> None:
    """List per study the series `cacpipe scan` would score and every skipped series with its reason.

    Reads headers only, runs no network: seconds even for a large export. The same as
    `cacpipe scan -i INPUT --dry-run`. Exit code 3 when nothing would be scored.
    """
    input_path = require(one_of(export, input_path, "the input", "-i/--input"), "the input", "-i INPUT")
    settings = settings_from_options(settings_file, selection_given(
        min_slices, min_spacing, max_spacing, max_missing_slices, preferred_kernel, allow_contrast))
    ctx.exit(print_dry_run(input_path, out, settings, patient_id, as_json=as_json, progress=not no_progress,
                           ids_csv=ids_csv))
