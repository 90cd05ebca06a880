"""``cacpipe models``: install and list stage-2 segmentation models (exported nnU-Net zips)."""

from __future__ import annotations

from pathlib import Path

import click

_MODEL_DIR_HELP = "Model directory (default: $CACPIPE_MODEL_DIR, else ~/.cacpipe/models)."


@click.group("models")
def command() -> None:
    """Install and list the coronary segmentation models (nnU-Net five-fold ensembles).

    A model is the zip that `make train` (or nnUNetv2_export_model_to_zip) writes. Installing
    checks that its labels, regions and input channel match cacpipe's six-class scheme and
    refuses any other model. Without an installed model, cacpipe falls back to the shipped
    phantom-trained demo model, which is NOT FOR CLINICAL USE.
    """


@command.command("install")
@click.argument("zip_path", metavar="ZIP", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=_MODEL_DIR_HELP)
@click.option("--force", is_flag=True, help="Replace a model of the same name that is already installed.")
def install(zip_path: Path, model_dir: Path | None, force: bool) -> None:
    """Install the exported nnU-Net model ZIP into the model directory."""
    from ..segment.models import install_model

    m = install_model(zip_path, model_dir, force=force)
    click.echo(f"installed {m.full_name}  (folds {', '.join(map(str, m.folds))}; spacing "
               f"{' x '.join(f'{s:g}' for s in m.spacing_zyx)} mm z,y,x) -> {m.path}")
    if m.is_demo:
        click.echo("note: this is a phantom-trained demo model, NOT FOR CLINICAL USE")
    for w in m.warnings:
        click.secho(f"WARNING: {w}", fg="red", bold=True, err=True)


@command.command("list")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=_MODEL_DIR_HELP)
def list_(model_dir: Path | None) -> None:
    """List installed models (and the model cacpipe would use)."""
    from ..errors import CacpipeError
    from ..segment.models import find_model, list_models
    from ..segment.models import model_dir as resolve

    models = list_models(model_dir)
    click.echo(f"model directory: {resolve(model_dir)}")
    for m in models:
        demo = "  [demo: NOT FOR CLINICAL USE]" if m.is_demo else ""
        click.echo(f"  {m.full_name}  folds {','.join(map(str, m.folds))}  "
                   f"spacing {' x '.join(f'{s:g}' for s in m.spacing_zyx)} mm{demo}")
    if not models:
        click.echo("  (none installed)")
    try:
        used = find_model(None, model_dir)
        click.echo(f"in use: {used.full_name}" + ("  (shipped demo model, NOT FOR CLINICAL USE)" if used.is_demo else ""))
    except CacpipeError as exc:
        click.echo(f"in use: none ({exc})")
