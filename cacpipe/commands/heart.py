"""``cacpipe heart``: stage 1 on one CT (heart mask, cropped CT, crop record) or weight status."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import HeartSettings, SelectionSettings


@click.command("heart")
@click.argument("ct_arg", metavar="[CT]", required=False, type=click.Path(exists=True, path_type=Path))
@click.argument("out_arg", metavar="[OUT]", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-i", "--input", "ct", type=click.Path(exists=True, path_type=Path), default=None,
              help="The CT (same as CT): a NIfTI/NRRD file, or a DICOM series folder, zip or DICOMDIR.")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (same as OUT).")
@click.option("--method", type=click.Choice(["auto", "totalsegmentator", "fallback"]), default="auto",
              show_default=True,
              help="auto: TotalSegmentator when its weights are installed, else the weights-free fallback "
                   "locator (flagged). totalsegmentator: fail if weights are missing. fallback: classical locator.")
@click.option("--fast", is_flag=True, help="TotalSegmentator fast mode (3 mm model, Dataset297) instead of 1.5 mm "
                                           "(Dataset293).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
              help="Device for TotalSegmentator (auto: CUDA if available).")
@click.option("--spacing", nargs=3, type=float, default=None, metavar="Z Y X",
              help="Target spacing of the cropped CT in mm, (z, y, x). Default 0.8 0.73 0.73 (the paper's).")
@click.option("--padding", nargs=3, type=int, default=None, metavar="Z Y X",
              help="Crop padding in target-grid voxels, (z, y, x). Default 0 10 10 (the paper's (10,10,0) in x,y,z).")
@click.option("--margin", "margin_mm", type=float, default=HeartSettings().margin_mm, show_default=True,
              help="Extra margin (mm) around the heart box before the padding, for coronaries on the heart's "
                   "surface (0 reproduces the paper's crop). The fallback locator uses 10 mm.")
@click.option("--min-slices", type=int, default=SelectionSettings().min_slices, show_default=True,
              help="Fewer slices raise the few_slices flag.")
@click.option("--totalseg-home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="TotalSegmentator home (weights in HOME/nnunet/results). Default: $TOTALSEG_WEIGHTS_PATH, "
                   "$TOTALSEG_HOME_DIR or ~/.totalsegmentator, as TotalSegmentator resolves it.")
@click.option("--status", is_flag=True, help="Only show whether TotalSegmentator's heart weights are installed "
                                              "(and how to install them offline); CT and OUT are not needed.")
def command(ct_arg: Path | None, out_arg: Path | None, ct: Path | None, out: Path | None, method: str, fast: bool, device: str,
            spacing: tuple[float, float, float] | None, padding: tuple[int, int, int] | None, margin_mm: float,
            min_slices: int,
            totalseg_home: Path | None, status: bool) -> None:
    """Stage 1: find the heart in CT (a NIfTI/NRRD file or a DICOM series folder or zip) and crop it.

    OUT gets heart_mask.nii.gz (on the CT's grid), ct_cropped.nii.gz (resampled to the target
    spacing and cropped to the heart box), crop.json (the crop record that maps labels back to
    the CT's grid) and stage1.json (method, flags, warnings, heart volume, blood pool HU).
    TotalSegmentator never downloads anything and sends no usage statistics.
    """
    from ..clitools import one_of
    from ..config import HeartMethod, parse_device
    from ..errors import ConfigError
    from ..heart import heart_crop, totalseg_status

    ct = one_of(ct_arg, ct, "the CT", "-i/--input")
    out = one_of(out_arg, out, "the output folder", "-o/--out")

    if status:
        for f in (False, True):
            st = totalseg_status(totalseg_home, f)
            mode = "fast" if f else "normal"
            click.echo(f"TotalSegmentator ({mode} mode): {'installed' if st['installed'] else 'NOT installed'}"
                       f"  [weights: {st['weights_dir']}]")
            for did, m in st["models"].items():
                click.echo(f"  Dataset{did}: {'ok' if m['installed'] else 'missing'}  {m['path']}")
        st = totalseg_status(totalseg_home, fast)
        if not st["installed"]:
            click.echo(st["instructions"])
        return
    if ct is None or out is None:
        raise ConfigError("give CT and OUT (e.g. `cacpipe heart -i ct.nii.gz -o out/`), or --status")

    from ..ingest import read_ct
    from ..units import PAPER_SPACING_ZYX

    cfg = HeartSettings(method=HeartMethod(method), fast=fast,
                        padding_voxels_zyx=tuple(padding) if padding else HeartSettings().padding_voxels_zyx,
                        margin_mm=margin_mm, totalseg_home=None if totalseg_home is None else str(totalseg_home))
    vol = read_ct(ct).volume
    res = heart_crop(vol, cfg, target_spacing_zyx=tuple(spacing) if spacing else PAPER_SPACING_ZYX,
                     device=parse_device(device), min_slices=min_slices)
    from ..files import make_private_dir, protect

    make_private_dir(out)  # the patient's cropped CT: owner-only, as every output with patient data
    res.heart_mask.write(out / "heart_mask.nii.gz")
    res.cropped_ct.write(out / "ct_cropped.nii.gz")
    res.record.save(out / "crop.json")
    summary = {"schema": "cacpipe.stage1/1", "input": str(ct), "method": res.method,
               "flags": [f.to_dict() for f in res.flags], "warnings": res.warnings, "info": res.info,
               "cropped_shape_zyx": list(res.record.cropped_shape_zyx), "settings": cfg.to_dict(),
               "outputs": {"heart_mask": "heart_mask.nii.gz", "cropped_ct": "ct_cropped.nii.gz",
                           "crop_record": "crop.json"}}
    (out / "stage1.json").write_text(json.dumps(summary, indent=2))
    protect(out / n for n in ("heart_mask.nii.gz", "ct_cropped.nii.gz", "crop.json", "stage1.json"))
    click.echo(f"heart ({res.method}): {res.info.get('heart_volume_ml', 0):.0f} mL; cropped CT "
               f"{'x'.join(map(str, res.record.cropped_shape_zyx))} at "
               f"{'x'.join(f'{s:g}' for s in res.record.target_spacing_zyx)} mm -> {out}")
    for f in res.flags:
        click.echo(f"  [{f.severity}] {f.code}: {f.message}")
