"""``cacpipe severity``: fit, inspect and apply the per-artery ordinal severity model."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("severity")
def command() -> None:
    """Per-artery severity grade (none / mild / moderate / severe) from calcium volume.

    The grade comes from a logit ordinal model (statsmodels OrderedModel) per artery. The
    packaged default is NOT fitted on radiologist data (see `cacpipe severity show`): fit
    your own on local grades with `cacpipe severity fit`.
    """


@command.command("fit")
@click.argument("csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the fitted model (JSON), e.g. severity_local.json.")
@click.option("--provenance", default="", help="Text stored with the model saying what data it was fitted on.")
def fit_cmd(csv: Path, out: Path, provenance: str) -> None:
    """Fit the severity model on radiologist grades in CSV and save it to --out.

    CSV in long form (one row per graded artery: artery, grade, volume_ml or
    calcium_volume_mm3) or wide form (one row per study: <ARTERY>_grade and
    <ARTERY>_calcium_volume_mm3 for RCA, LAD, LCX). Grades: none, mild, moderate, severe.
    """
    from ..quant.severity import SeverityModel
    from ..tables import read_csv

    df = read_csv(csv, "grades")
    model = SeverityModel.fit(df, provenance=provenance or f"fitted with statsmodels OrderedModel (logit) on {csv.name}")
    model.save(out)
    click.echo(f"severity model written to {out}")
    _print(model)


@command.command("show")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A model JSON written by `severity fit` (default: the packaged default model).")
@click.option("--volume", "volumes", type=float, multiple=True, metavar="ML",
              help="Also print the grade and probabilities at these calcium volumes (mL). Repeatable.")
def show_cmd(model_path: Path | None, volumes: tuple[float, ...]) -> None:
    """Print a severity model: provenance, coefficients, cut points and grade boundaries."""
    from ..quant.severity import SeverityModel

    model = SeverityModel.load(model_path) if model_path else SeverityModel.load_default()
    _print(model)
    for v in volumes:
        for artery in model.arteries:
            grade, probs = model.predict(artery, v)
            ps = ", ".join(f"{g} {p:.2f}" for g, p in (probs or {}).items())
            click.echo(f"  {artery} at {v:g} mL: {grade}  ({ps})")


def _print(model) -> None:
    click.echo(f"source: {model.source or '(in memory)'}")
    click.echo(f"provenance: {model.provenance}")
    for artery, m in model.arteries.items():
        bounds = ", ".join(f"{b * 1000:.0f} mm3" for b in model.boundaries_ml(artery))
        extra = ""
        if "p" in m.stats:
            extra = (f"  (95% CI {m.stats['ci_low']:.2f} to {m.stats['ci_high']:.2f}, Wald {m.stats['wald']:.2f}, "
                     f"p {m.stats['p']:.3g}, n {m.stats['n']})")
        click.echo(f"  {artery}: B {m.coef:.2f} per mL{extra}; cut points "
                   f"{', '.join(f'{c:.3f}' for c in m.cutpoints)}; levels {'/'.join(m.levels)}; boundaries {bounds}")
