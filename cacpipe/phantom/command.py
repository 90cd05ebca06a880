"""``cacpipe phantom``: write a synthetic chest CT with known coronary calcium, or a cohort of them."""

from __future__ import annotations

import json
from pathlib import Path

import click

V1_PRESETS = ["full", "small", "thin"]
V2_PRESETS = ["v2", "v2-small", "v2-bench", "v2-cardiac"]


class _DefaultWrite(click.Group):
    """``cacpipe phantom OUT ...`` means ``cacpipe phantom write OUT ...`` (the command before subcommands)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["write", *args]
        return super().parse_args(ctx, args)


@click.group("phantom", cls=_DefaultWrite)
def command() -> None:
    """Synthetic chest CT phantoms with exact coronary calcium truth (no real patient).

    \b
    cacpipe phantom OUT [options]           one phantom (NIfTI, truth.json, DICOM study)
    cacpipe phantom cohort N OUT --seed S   a PACS export of N varied phantoms + truth.csv
    """


@command.command("write")
@click.argument("out_arg", metavar="[OUT]", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (same as OUT).")
@click.option("--preset", type=click.Choice(V1_PRESETS + V2_PRESETS), default="full", show_default=True,
              help="v1: full 512x512x120 at 2.5 mm, small 256x256x100 at 2 mm, thin 512x512x300 at 1 mm. "
                   "v2 (varied anatomy, confounders, scanner model; drawn from --seed): v2, v2-small, "
                   "v2-bench (512x512x400), v2-cardiac (gated: 200-250 mm field of view on the heart, 2.5-3 mm).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="v1: seed of the noise. v2: seed of the whole phantom. Same seed, same voxels.")
@click.option("--noise", "noise_hu", type=float, default=None, help="Noise SD in HU (v1 default 20; low-dose 40-60).")
@click.option("--plaque", "plaques", multiple=True, metavar="ARTERY:T:RADIUS_MM:HU",
              help="v1 only: a calcified plaque, e.g. LAD:0.3:1.5:400 (T = position along the artery, 0..1). "
                   "Repeat for several. Default: four plaques in RCA, LAD and LCX.")
@click.option("--no-calcium", is_flag=True, help="No coronary calcium at all (a CAC = 0 case).")
@click.option("--contrast", is_flag=True, help="Iodine contrast in the blood pool of the main series "
                                               "(v2: an arterial phase, not declared in the DICOM header).")
@click.option("--no-valve-calcium", is_flag=True, help="Leave out aortic valve and mitral annulus calcium.")
@click.option("--contrast-series", is_flag=True, help="Also write a contrast-enhanced axial series.")
@click.option("--thin-series", is_flag=True, help="v1: also write a thin-slice axial series (half the spacing).")
@click.option("--situs-inversus", is_flag=True, help="v2: the mirror-image chest (heart on the right).")
@click.option("--no-dicom", is_flag=True, help="Write NIfTI and ground truth only.")
@click.option("--patient-id", default="PHANTOM0001", show_default=True)
@click.option("--patient-name", default="PHANTOM^ALPHA", show_default=True)
def write(out_arg: Path | None, out: Path | None, preset: str, seed: int, noise_hu: float | None, plaques: tuple[str, ...], no_calcium: bool,
          contrast: bool, no_valve_calcium: bool, contrast_series: bool, thin_series: bool, situs_inversus: bool,
          no_dicom: bool, patient_id: str, patient_name: str) -> None:
    """Write a synthetic chest CT phantom with exact ground truth to OUT.

    OUT gets ct.nii.gz (HU), labels.nii.gz (six-class coronary map), heart.nii.gz,
    truth.json (per-artery calcium volume, Agatston, lesions; v2: per plaque too, and the
    flags a pipeline should raise), v2 also truth_lesions.nii.gz (plaque id per voxel), and
    dicom/ (a multi-series CT study with a localizer, as a PACS would export it).
    """
    from ..clitools import one_of, require
    from ..errors import ConfigError
    from . import PatientInfo

    out = require(one_of(out_arg, out, "the output folder", "-o/--out"), "the output folder", "-o OUT")
    patient = PatientInfo(patient_id=patient_id, patient_name=patient_name)
    if preset in V2_PRESETS:
        if plaques or thin_series:
            raise ConfigError("--plaque and --thin-series are v1 options; v2 phantoms draw their plaques "
                              "from --seed (see docs/phantom.md)")
        truth = _write_v2(out, preset, seed, noise_hu, no_calcium, contrast, no_valve_calcium, contrast_series,
                          situs_inversus, no_dicom, patient)
        grid = truth["acquisition"]
        click.echo(f"phantom v2 written to {out}  (seed {seed}, {grid['n_slices']} slices of "
                   f"{grid['slice_thickness_mm']:g} mm, kernel {grid['kernel']})")
    else:
        if situs_inversus:
            raise ConfigError("--situs-inversus needs a v2 preset (v2, v2-small, v2-bench)")
        truth = _write_v1(out, preset, seed, noise_hu, plaques, no_calcium, contrast, no_valve_calcium,
                          contrast_series, thin_series, no_dicom, patient)
    for artery, v in truth["arteries"].items():
        click.echo(f"  {artery}: calcium {v['calcium_volume_mm3']:.1f} mm3, Agatston {v['agatston']:.1f}, "
                   f"lesions {v['lesions']}")
    tot = truth["total"]
    click.echo(f"  total: calcium {tot['calcium_volume_mm3']:.1f} mm3, Agatston {tot['agatston']:.1f}")
    if truth.get("expected_flags"):
        click.echo(f"  flags a pipeline should raise: {', '.join(truth['expected_flags'])}")
    if not no_dicom:
        click.echo(f"  DICOM study: {json.dumps({k: v['files'] for k, v in truth['dicom']['series'].items()})} files")


def _write_v1(out, preset, seed, noise_hu, plaques, no_calcium, contrast, no_valve_calcium, contrast_series,
              thin_series, no_dicom, patient) -> dict:
    from ..errors import ConfigError
    from . import PhantomConfig, Plaque
    from .writer import write_phantom

    overrides: dict = {"seed": seed, "contrast": contrast}
    if noise_hu is not None:
        overrides["noise_hu"] = noise_hu
    try:
        if no_calcium:
            overrides["plaques"] = ()
        elif plaques:
            overrides["plaques"] = tuple(Plaque.parse(p) for p in plaques)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if no_valve_calcium:
        overrides.update(aortic_valve_calcium=False, mitral_annulus_calcium=False)
    cfg = PhantomConfig.preset(preset, **overrides)
    _, truth = write_phantom(cfg, out, patient, dicom=not no_dicom, contrast_series=contrast_series,
                             thin_series=thin_series)
    click.echo(f"phantom written to {out}  (grid {cfg.n_slices}x{cfg.shape_yx[0]}x{cfg.shape_yx[1]}, seed {seed})")
    return truth


def _write_v2(out, preset, seed, noise_hu, no_calcium, contrast, no_valve_calcium, contrast_series, situs_inversus,
              no_dicom, patient) -> dict:
    from .v2 import random_config
    from .v2.study import write_phantom_v2

    acq: dict = {}
    if noise_hu is not None:
        acq["noise_hu"] = noise_hu
    if contrast:
        acq["contrast_phase"] = "arterial"
    overrides: dict = {"acquisition": acq} if acq else {}
    if no_calcium:
        overrides["plaques"] = ()
    if no_valve_calcium:
        overrides["findings"] = {"aortic_valve_calcium_mm3": 0.0, "mitral_annulus_calcium_deg": 0.0}
    if situs_inversus:
        overrides["heart"] = {"situs_inversus": True}
    cfg = random_config(seed, preset, **overrides)
    _, truth = write_phantom_v2(cfg, out, patient, dicom=not no_dicom,
                                extra_series=("contrast",) if contrast_series else ())
    return truth


@command.command("cohort")
@click.argument("n", type=click.IntRange(min=1))
@click.argument("out_arg", metavar="[OUT]", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (same as OUT).")
@click.option("--seed", type=int, default=None,
              help="First seed (seeds SEED .. SEED+N-1). Default: the start of the --purpose range "
                   "(held-out evaluation seeds when no purpose is given).")
@click.option("--preset", type=click.Choice(V2_PRESETS), default="v2", show_default=True)
@click.option("--purpose", type=click.Choice(["tests", "demo", "training", "heldout"]), default=None,
              help="Refuse seeds outside this range of cacpipe.phantom.seeds (e.g. heldout for evaluation).")
@click.option("--no-extras", is_flag=True, help="Only the localizer and the axial series per study.")
@click.option("--follow-up", "follow_up", multiple=True, metavar="YEARS",
              help="Also write each patient's later study YEARS after the baseline (same anatomy, new "
                   "acquisition, calcium grown, some new plaques; 0 = a rescan). Repeat or comma-separate: "
                   "--follow-up 1,2. Truth per time point and OUT/progression_truth.json (docs/progression.md).")
def cohort(n: int, out_arg: Path | None, out: Path | None, seed: int | None, preset: str, purpose: str | None,
           no_extras: bool, follow_up: tuple[str, ...]) -> None:
    """Write N varied v2 phantoms as a PACS export (OUT/export) with truth (OUT/truth, OUT/truth.csv).

    OUT/truth.csv is a reference table `cacpipe evaluate` reads: per study the truth per artery
    (present, calcium volume, Agatston, lesions), totals, category, CAC-DRS, patient and scan
    subgroups and the flags a pipeline should raise. Score a run with
    `cacpipe scan OUT/export RESULTS` then `cacpipe evaluate RESULTS/cohort.csv OUT/truth.csv`.
    """
    from ..clitools import one_of, require
    from ..errors import ConfigError
    from . import seeds as seed_ranges
    from .cohort import write_cohort

    out = require(one_of(out_arg, out, "the output folder", "-o/--out"), "the output folder", "-o OUT")

    first = seed if seed is not None else seed_ranges.seed_range(purpose or "heldout").start

    def progress(i, total, pid):
        click.echo(f"  [{i}/{total}] {pid}", err=True)

    years = _years(follow_up)
    if years and preset == "v2-cardiac":
        raise ConfigError("--follow-up needs a chest preset (v2, v2-small, v2-bench), not v2-cardiac")
    rows = write_cohort(n, out, first, preset, purpose=purpose, extras=not no_extras, progress=progress,
                        follow_up=years)
    pos = sum(1 for r in rows if r["total_agatston"] > 0 and not r.get("time_point"))
    if years:
        click.echo(f"  follow-ups at {', '.join(f'{y:g}' for y in years)} years: {len(rows)} studies; "
                   f"lesion identity over time in {out / 'progression_truth.json'}")
    click.echo(f"cohort of {n} phantoms (seeds {first}-{first + n - 1}, preset {preset}) written to {out}: "
               f"{pos} with coronary calcium; truth table {out / 'truth.csv'}")


def _years(values: tuple[str, ...]) -> list[float]:
    """--follow-up values (repeated and/or comma-separated) as sorted distinct years."""
    from ..errors import ConfigError

    out: set[float] = set()
    for v in values:
        for part in str(v).replace(" ", ",").split(","):
            if not part:
                continue
            try:
                y = float(part)
            except ValueError:
                raise ConfigError(f"--follow-up takes years as numbers (e.g. 1 or 0.5), got {part!r}") from None
            if not 0.0 <= y <= 30.0:
                raise ConfigError(f"--follow-up must be 0-30 years after the baseline, got {part}")
            out.add(y)
    return sorted(out)
