"""``cacpipe phantom``: write a synthetic chest CT with known coronary calcium."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("phantom")
@click.argument("out_arg", metavar="[OUT]", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (same as OUT).")
@click.option("--preset", type=click.Choice(["full", "small", "thin"]), default="full", show_default=True,
              help="full: 512x512x120 at 2.5 mm (a routine chest CT); small: 256x256x100 at 2 mm, fast; "
                   "thin: 512x512x300 at 1 mm.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise; same seed, same voxels.")
@click.option("--noise", "noise_hu", type=float, default=None, help="Noise SD in HU (default 20; low-dose 40-60).")
@click.option("--plaque", "plaques", multiple=True, metavar="ARTERY:T:RADIUS_MM:HU",
              help="A calcified plaque, e.g. LAD:0.3:1.5:400 (T = position along the artery, 0..1). "
                   "Repeat for several. Default: four plaques in RCA, LAD and LCX.")
@click.option("--no-calcium", is_flag=True, help="No coronary calcium at all (a CAC = 0 case).")
@click.option("--contrast", is_flag=True, help="Iodine contrast in the blood pool of the main series.")
@click.option("--no-valve-calcium", is_flag=True, help="Leave out aortic valve and mitral annulus calcium.")
@click.option("--contrast-series", is_flag=True, help="Also write a contrast-enhanced axial series.")
@click.option("--thin-series", is_flag=True, help="Also write a thin-slice axial series (half the slice spacing).")
@click.option("--no-dicom", is_flag=True, help="Write NIfTI and ground truth only.")
@click.option("--patient-id", default="PHANTOM0001", show_default=True)
@click.option("--patient-name", default="PHANTOM^ALPHA", show_default=True)
def command(out_arg: Path | None, out: Path | None, preset: str, seed: int, noise_hu: float | None, plaques: tuple[str, ...], no_calcium: bool,
            contrast: bool, no_valve_calcium: bool, contrast_series: bool, thin_series: bool, no_dicom: bool,
            patient_id: str, patient_name: str) -> None:
    """Write a synthetic chest CT phantom with exact ground truth to OUT.

    OUT gets ct.nii.gz (HU), labels.nii.gz (six-class coronary map), heart.nii.gz,
    truth.json (per-artery calcium volume, Agatston, lesions) and dicom/ (a multi-series CT
    study with a localizer, as a PACS would export it). Synthetic data, no real patient.
    """
    from ..clitools import one_of, require
    from ..errors import ConfigError
    from ..phantom import PatientInfo, PhantomConfig, Plaque
    from ..phantom.writer import write_phantom

    out = require(one_of(out_arg, out, "the output folder", "-o/--out"), "the output folder", "-o OUT")

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
    patient = PatientInfo(patient_id=patient_id, patient_name=patient_name)
    _, truth = write_phantom(cfg, out, patient, dicom=not no_dicom, contrast_series=contrast_series,
                             thin_series=thin_series)
    tot = truth["total"]
    click.echo(f"phantom written to {out}  (grid {cfg.n_slices}x{cfg.shape_yx[0]}x{cfg.shape_yx[1]}, "
               f"seed {seed})")
    for artery, v in truth["arteries"].items():
        click.echo(f"  {artery}: calcium {v['calcium_volume_mm3']:.1f} mm3, Agatston {v['agatston']:.1f}, "
                   f"lesions {v['lesions']}")
    click.echo(f"  total: calcium {tot['calcium_volume_mm3']:.1f} mm3, Agatston {tot['agatston']:.1f}")
    if not no_dicom:
        click.echo(f"  DICOM study: {json.dumps({k: v['files'] for k, v in truth['dicom']['series'].items()})} files")
