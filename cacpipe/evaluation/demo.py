"""``cacpipe demo``: write a phantom PACS export and scan it end to end."""

from __future__ import annotations

from pathlib import Path

import click

from ..clitools import one_of, require


def truth_table(results: Path, truth: Path) -> str:
    """Per patient and artery: true vs reported Agatston, and the risk category (from the truth the demo wrote)."""
    from ..labels import ARTERIES
    from .sources import load_prediction, load_reference

    pred_rows = load_prediction(results).to_dict("records")
    ref = load_reference(truth).to_dict("records")
    by_uid = all(r.get("study_uid") for r in ref)  # a patient with several studies: one line per study
    pred = {str(r["study_uid"] if by_uid else r["patient_id"]): r for r in pred_rows}
    first = {}
    for t in sorted(ref, key=lambda r: (str(r["patient_id"]), str(r.get("study_date") or ""))):
        first.setdefault(str(t["patient_id"]), t)

    def num(v) -> str:
        try:
            return f"{float(v):.1f}"
        except (TypeError, ValueError):
            return "-"

    cols = [*ARTERIES, "total"]
    w = max([10] + [len(str(t["patient_id"])) + 6 for t in ref if first[str(t["patient_id"])] is not t])
    lines = ["Agatston, true / reported (phantom truth in " + str(truth) + "):",
             f"{'patient':<{w}}" + "".join(f"{c:>18}" for c in cols) + f"{'category true / reported':>30}"]
    for t in sorted(ref, key=lambda r: (str(r["patient_id"]), str(r.get("study_date") or ""))):
        pid = str(t["patient_id"])
        p = pred.get(str(t["study_uid"]) if by_uid else pid, {})
        if first[pid] is not t:  # a later study of the patient: named by its year
            pid = f"{pid} {str(t.get('study_date') or '')[:4]}"
        cells = [f"{num(t.get(f'{c}_agatston'))} / {num(p.get(f'{c}_agatston'))}" for c in cols]
        cat = f"{t.get('category') or '-'} / {p.get('category') or '-'}"
        lines.append(f"{pid:<{w}}" + "".join(f"{c:>18}" for c in cells) + f"{cat:>30}")
    return "\n".join(lines)


def trend_table(doc: dict, truth: Path) -> str:
    """Per patient with several studies (cacpipe progression's document): per artery the Agatston of
    each study and the change per year, true / reported, and whether cacpipe calls it progression."""
    import math

    from ..labels import ARTERIES
    from .sources import load_reference

    ref = {str(r["study_uid"]): r for r in load_reference(truth).to_dict("records") if r.get("study_uid")}
    lines = []

    def num(v, sign: bool = False) -> str:
        try:
            return f"{float(v):+.1f}" if sign else f"{float(v):.1f}"
        except (TypeError, ValueError):
            return "-"

    for patient, p in doc["patients"].items():
        for pair in p["pairs"]:
            a, b = ref.get(pair["prior"], {}), ref.get(pair["current"], {})
            dates = {s["study_uid"]: s["study_date"] for s in p["studies"]}
            lines.append(f"Progression of {patient}, {dates[pair['prior']]} -> {dates[pair['current']]} "
                         f"({pair['years']:.2f} years; {pair['counts']['new']} new, {pair['counts']['grown']} grown, "
                         f"{pair['counts']['stable']} stable lesions), true / reported:")
            lines.append(f"{'artery':<8}{'Agatston before':>20}{'Agatston after':>20}{'change per year':>20}"
                         f"{'sqrt volume change':>22}{'progression':>16}")
            for art in (*ARTERIES, "total"):
                ch = pair["arteries"].get(art, {})
                g1, g2 = a.get(f"{art}_agatston"), b.get(f"{art}_agatston")
                v1, v2 = a.get(f"{art}_calcium_volume_mm3"), b.get(f"{art}_calcium_volume_mm3")
                t_rate = (float(g2) - float(g1)) / pair["years"] if None not in (g1, g2) and pair["years"] else None
                t_sqrt = math.sqrt(max(float(v2), 0)) - math.sqrt(max(float(v1), 0)) if None not in (v1, v2) else None
                t_prog = None if t_sqrt is None else t_sqrt >= doc["repeatability"]["sqrt_volume_threshold"]
                yn = {True: "yes", False: "no", None: "-"}
                lines.append(f"{art:<8}{num(g1) + ' / ' + num(ch.get('agatston_prior')):>20}"
                             f"{num(g2) + ' / ' + num(ch.get('agatston')):>20}"
                             f"{num(t_rate, True) + ' / ' + num(ch.get('agatston_change_per_year'), True):>20}"
                             f"{num(t_sqrt, True) + ' / ' + num(ch.get('sqrt_volume_change'), True):>22}"
                             f"{yn[t_prog] + ' / ' + yn[ch.get('progression')]:>16}")
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

    The export holds three phantom patients (one without coronary calcium; the first comes back
    two years later, v1 only), a localizer, a contrast series and a thin lung-kernel series
    (skipped, with their reasons in manifest.json), one study as a zip file. `cacpipe
    progression` then measures the returning patient's trend into OUT/progression, and the later
    study's review page and SR show the prior. The scan uses the installed model; without one it
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
        from ..phantom.demo_export import FOLLOW_UP_PATIENT

        later = out / "truth" / f"{FOLLOW_UP_PATIENT.patient_id}_{FOLLOW_UP_PATIENT.study_date}.json"
        if phantom == "v1" and (out / "truth").is_dir() and not later.exists():  # written before the demo had it
            write_demo_export(export, preset=preset, truth_dir=out / "truth", only_follow_up=True)
            click.echo(f"added {FOLLOW_UP_PATIENT.patient_id}'s follow-up study to it")
    else:
        write_demo_export(export, preset=preset, truth_dir=out / "truth", version=int(phantom[1]),
                          follow_up=phantom == "v1")
        click.echo(f"phantom PACS export written to {export} (ground truth: {out / 'truth'})")
    summary = run_logged(export, out / "results", settings, jobs=jobs, progress=not no_progress, force=force,
                         command="demo")
    if (out / "truth").is_dir() and (out / "results" / "cohort.csv").exists():
        click.echo(truth_table(out / "results", out / "truth"))
    _progression(out)
    click.echo("Synthetic phantom data; each line and result says which model and heart locator made it.")
    ctx.exit(summary.exit_code)


def _progression(out: Path) -> None:
    """`cacpipe progression OUT/results -o OUT/progression` (studies' pages and SRs get the prior) and the trend."""
    from ..errors import CacpipeError
    from ..progression.report import write_outputs
    from ..progression.run import run_progression

    if not (out / "results" / "manifest.json").exists():
        return
    views: dict = {}
    try:
        doc = run_progression(out / "results", views=views, study_outputs={"salt": None})
    except CacpipeError as exc:
        click.echo(f"progression not measured: {exc}")
        return
    if not doc["patients"]:
        return
    paths = write_outputs(doc, out / "progression", views)
    if (out / "truth").is_dir():
        click.echo(trend_table(doc, out / "truth"))
    click.echo(f"progression written to {paths['html']}; the later study's review page shows the prior beside it")
