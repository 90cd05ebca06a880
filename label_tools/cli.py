"""``cacpipe-labels``: MASS .con annotations <-> six-class label maps, and the nnU-Net dataset."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from cacpipe.clitools import CONTEXT_SETTINGS, OneLineErrorGroup


@click.group(cls=OneLineErrorGroup, context_settings=CONTEXT_SETTINGS)
def cli() -> None:
    """Convert MASS (LUMC 2021EXP) coronary CT annotations for cacpipe retraining.

    MASS .con files have four classes (RCA, mainstem+LAD, LCX, calcium of any artery); these
    tools rasterise them on the CT grid, split calcium per artery and build the six-class,
    region-based nnU-Net v2 dataset. Conventions and the calcium rule: docs/label_tools.md.
    """


def grid_options(f):
    """Options shared by every command that maps .con coordinates onto a CT grid."""

    @click.option("--mapping", "mapping_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Contour-type -> class JSON (default: the built-in ASSUMED mapping 0 RCA, 1 LAD, 2 LCX, "
                       "3 calcium; print it with `default-mapping`).")
    @click.option("--slice-order", type=click.Choice(["forward", "reversed"]), default="forward", show_default=True,
                  help="forward: .con slice 0 = first slice of the sorted CT stack; reversed: = last slice.")
    @click.option("--pixel-origin", type=click.Choice(["centre", "corner"]), default="centre", show_default=True,
                  help="centre: pixel (row r, col c) is centred at x=c, y=r; corner: at x=c+0.5, y=r+0.5.")
    @click.option("--any-frame", is_flag=True, help="Accept frame indices other than 0.")
    @click.option("--no-header-check", is_flag=True,
                  help="Do not compare Image_resolution / slice count in the .con header with the CT.")
    @functools.wraps(f)
    def wrapper(*args, mapping_path, slice_order, pixel_origin, any_frame, no_header_check, **kw):
        from .mapping import load_mapping
        from .raster import GridOptions

        kw["mapping"] = load_mapping(mapping_path)
        kw["grid"] = GridOptions(slice_order, pixel_origin, None if any_frame else 0, not no_header_check)
        return f(*args, **kw)

    return wrapper


def calcium_options(f):
    @click.option("--dilation-mm", type=float, default=2.0, show_default=True,
                  help="Calcium within this distance (mm) of an artery's mask touches that artery.")
    @click.option("--orphan", type=click.Choice(["nearest", "drop"]), default="nearest", show_default=True,
                  help="Calcium touching no artery: give it to the nearest artery within --orphan-max-mm, or drop it.")
    @click.option("--orphan-max-mm", type=float, default=5.0, show_default=True,
                  help="Farthest distance (mm) at which orphan calcium is still assigned.")
    @functools.wraps(f)
    def wrapper(*args, dilation_mm, orphan, orphan_max_mm, **kw):
        from .calcium import CalciumRules

        kw["rules"] = CalciumRules(dilation_mm, orphan, orphan_max_mm)
        return f(*args, **kw)

    return wrapper


@cli.command("default-mapping", short_help="Print the default contour-type mapping JSON.")
def default_mapping() -> None:
    """Print the default contour-type mapping (JSON) to edit: `cacpipe-labels default-mapping > m.json`."""
    from .mapping import default_mapping_text

    click.echo(default_mapping_text(), nl=False)


@cli.command("inspect", short_help="Summarise a .con file (header, types, slices).")
@click.argument("con", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--mapping", "mapping_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Mapping JSON to show the class of each type (default: built-in).")
def inspect(con: Path, mapping_path: Path | None) -> None:
    """Summarise a .con file: header, contour types found and their mapped class, slice range."""
    from .con_format import parse_con
    from .mapping import load_mapping

    c = parse_con(con)  # a file without contours, or binary (a NIfTI given by mistake), is an error
    m = load_mapping(mapping_path)
    click.echo(f"{con}: {len(c.contours)} contours")
    for k, v in c.header.items():
        click.echo(f"  {k}={v}")
    for t, n in c.types().items():
        cls = "ignored" if t in m.ignore_types else m.types.get(t, "UNKNOWN (not in mapping)")
        sl = [x.slice for x in c.contours if x.type == t]
        click.echo(f"  type {t}: {n} contours, slices {min(sl)}..{max(sl)} -> {cls}")
    if c.skipped_sections:
        click.echo(f"  skipped sections: {c.skipped_sections}")


@cli.command("convert", short_help=".con + CT -> six-class labels (one case or a batch).")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--ct", type=click.Path(exists=True, path_type=Path), default=None,
              help="The CT (NIfTI file or DICOM series folder) of SOURCE when SOURCE is one .con file.")
@grid_options
@calcium_options
def convert(source: Path, out: Path, ct: Path | None, mapping, grid, rules) -> None:
    """Contours -> six-class label NIfTI on the CT grid.

    One case: SOURCE is a .con file, --ct its CT, OUT the label file (e.g. labels.nii.gz); the
    report (calcium components, ambiguous/orphan calcium) goes to OUT's name + .report.json.
    Batch: SOURCE is an ANNOTATIONS folder (cases.csv, images/, contours/), OUT a folder that
    gets <case>.nii.gz and conversion_report.csv/.json; failed cases are listed and skipped.
    """
    from .convert import ConvertOptions, convert_batch, convert_case

    opts = ConvertOptions(grid=grid, rules=rules)
    if source.is_dir():
        s = convert_batch(source, out, mapping, opts)
        click.echo(f"{s['done']}/{s['cases']} cases converted, {s['failed']} failed; "
                   f"ambiguous calcium components {s['ambiguous_calcium_components']}, "
                   f"orphan {s['orphan_calcium_components']}; report {s['report_csv']}")
        if s["failed"]:
            sys.exit(1)
        return
    if ct is None:
        raise click.UsageError("a single .con file needs --ct (its CT image or DICOM folder)")
    labels, rep = convert_case(source, ct, mapping, opts)
    labels.write(out)
    rp = out.with_name(out.name.split(".")[0] + ".report.json")
    rp.write_text(json.dumps(rep, indent=2))
    comp = rep["calcium"]["components"]
    click.echo(f"{out}: {rep['contours']} contours; voxels {rep['voxels_by_class']}; calcium components "
               f"{comp}; report {rp}")


@cli.command("export-con", short_help="Six-class label map -> .con for MASS.")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--header", "headers", multiple=True, metavar="KEY=VALUE",
              help="Extra header line, e.g. Patient_name=X (repeatable).")
@click.option("--artery-excludes-calcium", is_flag=True,
              help="Draw artery contours around the non-calcified part only (default: whole vessel).")
@grid_options
def export_con_cmd(labels: Path, out: Path, headers: tuple[str, ...], artery_excludes_calcium: bool, mapping,
                   grid) -> None:
    """Six-class label map (e.g. a prediction) -> MASS .con file for correction in MASS.

    Writes the four MASS classes with the mapping's types (lowest type per class), CRLF lines,
    Image_resolution and Number_of_slices headers, so `convert` reads it back exactly.
    """
    from cacpipe.errors import ConfigError
    from cacpipe.volume import Volume

    from .convert import export_con

    hdr = {}
    for h in headers:
        k, sep, v = h.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"--header {h!r}: expected KEY=VALUE")
        hdr[k.strip()] = v.strip()
    st = export_con(Volume.read(labels), out, mapping, grid, hdr, not artery_excludes_calcium)
    click.echo(f"{out}: {st['contours']} contours" + (f"; {st['hole_pixels_filled']} hole pixels filled"
                                                       if st["hole_pixels_filled"] else ""))


@cli.command("build-dataset", short_help="ANNOTATIONS -> nnU-Net v2 raw dataset + splits.")
@click.argument("annotations", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("raw_root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset-id", type=int, default=501, show_default=True, help="nnU-Net dataset number.")
@click.option("--name", default="cacpipe_coronary", show_default=True, help="nnU-Net dataset name.")
@click.option("--folds", type=int, default=5, show_default=True, help="Folds of the patient-grouped split.")
@click.option("--heart-crop", is_flag=True, help="Crop CT and labels with the Stage 1 heart crop used at inference.")
@click.option("--spacing", nargs=3, type=float, default=None, metavar="Z Y X",
              help="With --heart-crop: the plan's spacing in mm (default: the paper plan's 0.8 0.73 0.73).")
@click.option("--preprocessed-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write splits_final.json to PREPROCESSED_ROOT/DatasetXXX_name/ (nnUNet_preprocessed).")
@click.option("--overwrite", is_flag=True, help="Replace the images/labels of an existing dataset folder.")
@grid_options
@calcium_options
def build_dataset_cmd(annotations: Path, raw_root: Path, dataset_id: int, name: str, folds: int, heart_crop: bool,
                      spacing: tuple[float, float, float] | None, preprocessed_root: Path | None, overwrite: bool, mapping, grid, rules) -> None:
    """ANNOTATIONS (cases.csv, images/, contours/) -> nnU-Net v2 raw dataset in RAW_ROOT.

    Writes DatasetXXX_name/{imagesTr, labelsTr, dataset.json (regions + regions_class_order),
    splits_final.json (patients kept in one fold), build_report.csv/.json}. Failed cases are
    reported and left out of the dataset.
    """
    from cacpipe.units import PAPER_SPACING_ZYX

    from .convert import ConvertOptions
    from .nnunet_dataset import build_dataset, stage1_heart_crop

    crop = stage1_heart_crop(spacing or PAPER_SPACING_ZYX) if heart_crop else None
    s = build_dataset(annotations, raw_root, dataset_id, name, mapping, ConvertOptions(grid=grid, rules=rules),
                      crop, folds, preprocessed_root, overwrite)
    click.echo(f"{s['dataset_dir']}: {s['written']}/{s['cases']} cases written, {s['failed']} failed; "
               f"splits {', '.join(s['splits'])}; report {s['report']}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``cacpipe-labels``."""
    cli.main(args=argv, prog_name="cacpipe-labels")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
