"""``cacpipe demo``: write a phantom PACS export and scan it end to end."""

from __future__ import annotations

from pathlib import Path

import click

from ..clitools import one_of, require


def truth_table(results: Path, truth: Path) -> str:
    """Per patient and artery: true vs reported Agatston, and the risk category (from the truth the demo wrote)."""
    from ..labels import ARTERIES
    from .sources import load_prediction, load_reference

    pred = {str(r["patient_id"]): r for r in load_prediction(results).to_dict("records")}
    ref = load_reference(truth).to_dict("records")

    def num(v) -> str:
        try:
            return f"{float(v):.1f}"
        except (TypeError, ValueError):
            return "-"

    cols = [*ARTERIES, "total"]
    lines = ["Agatston, true / reported (phantom truth in " + str(truth) + "):",
             f"{'patient':<10}" + "".join(f"{c:>18}" for c in cols) + f"{'category true / reported':>30}"]
    for t in sorted(ref, key=lambda r: str(r["patient_id"])):
        pid = str(t["patient_id"])
        p = pred.get(pid, {})
        cells = [f"{num(t.get(f'{c}_agatston'))} / {num(p.get(f'{c}_agatston'))}" for c in cols]
        cat = f"{t.get('category') or '-'} / {p.get('category') or '-'}"
        lines.append(f"{pid:<10}" + "".join(f"{c:>18}" for c in cells) + f"{cat:>30}")
    return "\n".join(lines)


@click.command("demo")
@click.argument("out_arg", metavar="[OUT]", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (same as OUT): OUT/export, OUT/truth, OUT/results.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Studies analysed at once.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N|cuda:0,1",
              help="Where the networks run.")
@click.option("--preset", type=click.Choice(["small", "full"]), default="small", show_default=True,
              help="Phantom size: small (256x256x100, fast) or full (512x512x120).")
@click.option("--phantom", "phantom", type=click.Choice(["v1", "v2"]), default="v1", show_default=True,
              help="Phantom generation: v1 (simple anatomy, what the shipped demo model was trained on) or v2 "
                   "(varied anatomy, partial-volume plaques, motion, devices; docs/phantom.md): harder, and the "
                   "demo model does worse on it.")
@click.option("--force", is_flag=True, help="Redo every study even if OUT/results already has it.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def command(ctx: click.Context, out_arg: Path | None, out: Path | None, jobs: int, device: str, preset: str,
            phantom: str, force: bool, no_progress: bool) -> None:
    """Write a synthetic PACS export to OUT/export and scan it to OUT/results.

    The export holds three phantom patients (one without coronary calcium), a localizer, a
    contrast series and a thin lung-kernel series (skipped, with their reasons in
    manifest.json), one study as a zip file. The scan uses the installed model; without one it
    uses the phantom demo model (the demo allows it, `cacpipe scan` needs --allow-demo-model)
    and, without TotalSegmentator weights, the fallback heart locator; every result says so in
    its flags. An existing OUT/export is reused. Synthetic data: no real patient.
    """
    from ..commands.scan import run_logged
    from ..config import Settings
    from ..phantom.demo_export import write_demo_export

    out = require(one_of(out_arg, out, "the output folder", "-o/--out"), "the output folder", "-o OUT")
    settings = Settings().merged({"device": device, "segment": {"allow_demo_model": True}})
    export = out / "export"
    if export.exists() and any(export.iterdir()):
        click.echo(f"reusing the phantom export in {export}")
    else:
        write_demo_export(export, preset=preset, truth_dir=out / "truth", version=int(phantom[1]))
        click.echo(f"phantom PACS export written to {export} (ground truth: {out / 'truth'})")
    summary = run_logged(export, out / "results", settings, jobs=jobs, progress=not no_progress, force=force,
                         command="demo")
    if (out / "truth").is_dir() and (out / "results" / "cohort.csv").exists():
        click.echo(truth_table(out / "results", out / "truth"))
    click.echo("Synthetic phantom data; each line and result says which model and heart locator made it.")
    ctx.exit(summary.exit_code)
