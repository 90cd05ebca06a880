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
    refuses any other model. Without an installed model `cacpipe scan` stops at start; with
    --allow-demo-model it uses the shipped phantom-trained demo model, NOT FOR CLINICAL USE.

    A model made by `make train` carries a model card (training data, plan, cross-validation,
    lineage) that install checks against the weights and shows; `show` prints it again.
    """


@command.command("install")
@click.argument("zip_path", metavar="ZIP", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=_MODEL_DIR_HELP)
@click.option("--force", is_flag=True, help="Replace a model of the same name that is already installed.")
@click.option("--accept-weak-model", "accept_weak", is_flag=True,
              help="Install even when the model card's cross-validation is below the floor (per-artery kappa "
                   "0.40, total Agatston ICC 0.50, mean Dice 0.20); it is then flagged wherever it is listed.")
def install(zip_path: Path, model_dir: Path | None, force: bool, accept_weak: bool) -> None:
    """Install the exported nnU-Net model ZIP into the model directory.

    A model whose card shows cross-validation below the floor is refused unless --accept-weak-model."""
    from ..segment.models import install_model

    m = install_model(zip_path, model_dir, force=force, accept_weak=accept_weak)
    click.echo(f"installed {m.full_name}  (folds {', '.join(map(str, m.folds))}; spacing "
               f"{' x '.join(f'{s:g}' for s in m.spacing_zyx)} mm z,y,x) -> {m.path}")
    _echo_card(m)
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
        click.echo(f"      {_headline(m)}")
    if not models:
        click.echo("  (none installed)")
    try:
        used = find_model(None, model_dir, allow_demo=False)
        click.echo(f"in use: {used.full_name}" + ("  (demo model, NOT FOR CLINICAL USE)" if used.is_demo else ""))
    except CacpipeError as exc:
        click.echo(f"in use: none ({exc}); `cacpipe scan --allow-demo-model` would use the shipped phantom demo "
                   "model, NOT FOR CLINICAL USE")


def _headline(m) -> str:
    from ..errors import CacpipeError
    from ..segment.card import headline

    try:
        return headline(m.card())
    except CacpipeError as exc:
        return f"model card unreadable: {exc}"


def _echo_card(m) -> None:
    from ..segment.card import summary_lines

    for line in summary_lines(m.card()):
        click.echo(line)


@command.command("show")
@click.argument("name", required=False)
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=_MODEL_DIR_HELP)
@click.option("--markdown", is_flag=True, help="Print the card's MODEL_CARD.md instead of the summary.")
def show(name: str | None, model_dir: Path | None, markdown: bool) -> None:
    """Show the model card of an installed model (NAME as in `cacpipe models list`; default: the one in use)."""
    from ..segment.card import CARD_MD
    from ..segment.models import find_model

    m = find_model(name, model_dir)
    click.echo(f"{m.full_name} -> {m.path}")
    if markdown and (m.path / CARD_MD).exists():
        click.echo((m.path / CARD_MD).read_text(encoding="utf-8"))
    else:
        _echo_card(m)
