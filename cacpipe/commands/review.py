"""``cacpipe review``: overlays, HTML review pages, DICOM SEG/SR/SC and sending them to a PACS."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import DISPLAY_FIELDS

FIELDS = list(DISPLAY_FIELDS)


@click.group("review")
def command() -> None:
    """Radiologist review: review pages (viewer, lesion table, corrections, ratings), DICOM outputs,
    PACS send, and applying readers' corrections.

    \b
    cacpipe review build STUDY_DIR --ct CT --labels LABELS [--result result.json] [--dicom DIR] [--send AE@HOST:PORT]
    cacpipe review index RESULTS_DIR
    cacpipe review apply OUT [-c corrections.json ...] [--training-cases CASES]
    cacpipe review send AE@HOST:PORT FILE_OR_DIR...
    cacpipe review send OUT [--to AE@HOST:PORT]
    """


def _print_send(report: dict) -> None:
    click.echo(f"sent {len(report['sent'])} object(s) to {report['target']}")
    for f in report["failed"]:
        click.echo(f"  FAILED {f['path']}: {f['error']}", err=True)


@command.command("build")
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The study folder to write (instead of the STUDY_DIR argument).")
@click.option("-i", "--ct", "ct_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="The CT: a NIfTI file, or a DICOM folder (then it is also the source for SEG/SR/SC).")
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Six-class label map (NIfTI) on the CT's grid.")
@click.option("--result", "result_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Per-study result JSON (cacpipe.result/2). Default: STUDY_DIR/result.json.")
@click.option("--dicom", "dicom_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Source DICOM series folder, when --ct is NIfTI; needed for SEG/SR/SC.")
@click.option("--series-uid", default=None, help="Which series of the DICOM folder, when it holds several.")
@click.option("--no-dicom-out", is_flag=True, help="Do not write DICOM SEG/SR/SC.")
@click.option("--show", "fields", multiple=True, type=click.Choice(FIELDS), default=("anon_id", "study_date"),
              show_default=True, help="Patient/study fields allowed in burned-in text and on the page (repeat).")
@click.option("--salt", default=None, help="Secret keying the anonymised id (the same at every site of a multi-site "
                                          "study) [default: this installation's secret, docs/privacy.md].")
@click.option("--window", default="200/800", show_default=True, metavar="LEVEL/WIDTH",
              help="Display window in HU (calcium window: 130 HU at 41% grey, >= 600 HU white).")
@click.option("--max-slices", type=int, default=40, show_default=True, help="Most lesion-slice PNGs per study.")
@click.option("--agreement", "agreement_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Fold-agreement map (NIfTI, 0..1, CT grid) for a heat-map panel.")
@click.option("--send", "send_to", default=None, metavar="AE@HOST:PORT", help="C-STORE SEG/SR/SC to this PACS.")
def build(study_dir: Path | None, out_dir: Path | None, ct_path: Path, labels_path: Path, result_path: Path | None, dicom_dir: Path | None,
          series_uid: str | None, no_dicom_out: bool, fields: tuple[str, ...], salt: str | None, window: str,
          max_slices: int, agreement_path: Path | None, send_to: str | None) -> None:
    """Write overlays/, review.html, review.json and dicom/ (SEG, SR, SC) for one study into STUDY_DIR.

    The CT is used at full resolution over the heart region and at reduced resolution elsewhere
    (docs/review.md); the NiiVue viewer is inlined when `make viewer` installed it."""
    from ..config import ReviewSettings
    from ..errors import ConfigError, InputDataError
    from ..ingest import read_ct
    from ..record import StudyResult
    from ..review import build_review, send_outputs
    from ..volume import Volume

    if (study_dir is None) == (out_dir is None):
        raise click.UsageError("give the study folder once: as STUDY_DIR or with -o/--out")
    study_dir = study_dir or out_dir
    result = StudyResult.load(result_path or study_dir / "result.json")
    try:
        level, width = (float(v) for v in window.split("/"))
    except ValueError as exc:
        raise ConfigError(f"--window must be LEVEL/WIDTH in HU, e.g. 200/800; got {window!r}") from exc
    loaded = read_ct(ct_path, series_uid=series_uid)
    ct, sources = loaded.volume, loaded.sources
    if dicom_dir is not None:
        sources = read_ct(dicom_dir, series_uid=series_uid).sources
    labels = Volume.read(labels_path)
    agreement = Volume.read(agreement_path) if agreement_path else None
    opts = ReviewSettings(fields=tuple(fields), window=(level, width), max_slices=max_slices,
                          dicom=not no_dicom_out)
    out = build_review(study_dir, ct, labels, result, sources, opts, salt=salt, agreement=agreement)
    click.echo(f"review written to {study_dir}: {len(out['overlays'])} PNG(s), {out['review_html']}"
               + (f", {out['seg']}, {out['sr']}, {len(out['sc'])} SC" if "seg" in out else ""))
    if "dicom_skipped" in out and not no_dicom_out:
        click.echo(f"note: {out['dicom_skipped']}; pass --dicom DIR", err=True)
    if send_to:
        if "seg" not in out:
            raise InputDataError("--send needs DICOM outputs; give the source series with --dicom (or --ct DIR)")
        files = [study_dir / out["seg"], study_dir / out["sr"], *(study_dir / p for p in out["sc"])]
        _print_send(send_outputs(files, send_to))


@command.command("index")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--show", "fields", multiple=True, type=click.Choice(FIELDS), default=("anon_id", "study_date"),
              show_default=True, help="Fields that name a study without a review page (failed, skipped).")
@click.option("--salt", default="", help="Secret mixed into the anonymised id (as for the review pages).")
def index(results_dir: Path, fields: tuple[str, ...], salt: str) -> None:
    """Write RESULTS_DIR/index.html: every study of RESULTS_DIR/manifest.json (failed and skipped ones
    with their reasons) and every review page under RESULTS_DIR."""
    from ..review import build_index

    click.echo(f"index written: {build_index(results_dir, fields=fields, salt=salt)}")


@command.command("send")
@click.argument("args", nargs=-1, required=True, metavar="OUT | AE@HOST:PORT FILE_OR_DIR...")
@click.option("--to", "to", default=None, metavar="AE@HOST:PORT",
              help="With OUT: send every done study not yet stored at this PACS [default: retry each study's "
                   "pending send to its own target].")
@click.option("--calling-ae", default="CACPIPE", show_default=True, help="Our AE title (the PACS must know it).")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Network timeout in seconds: the connection and negotiation may take twice it, each object and "
                   "the release once; a peer that stalls longer is aborted.")
def send(args: tuple[str, ...], to: str | None, calling_ae: str, timeout: float) -> None:
    """C-STORE DICOM outputs to a PACS.

    \b
    cacpipe review send OUT                         retry every pending send of a scan's output folder
    cacpipe review send OUT --to AE@HOST:PORT       send every done study of OUT not yet stored there
    cacpipe review send AE@HOST:PORT FILE_OR_DIR... send files (or every .dcm under folders)

    With OUT, only objects not yet stored are sent (a new SR after `review apply` goes alone), and
    each study's send state is recorded in manifest.json and its result.json."""
    from ..errors import CacpipeError
    from ..review import send_outputs

    first = Path(args[0])
    if len(args) == 1 and first.is_dir() and (first / "manifest.json").exists():
        from ..scan.delivery import send_pending

        sent, pending = send_pending(first, to, calling_ae=calling_ae, timeout_s=timeout, echo_line=click.echo)
        click.echo(f"{sent} stud{'y' if sent == 1 else 'ies'} sent, {pending} pending"
                   + (" (nothing to send)" if sent + pending == 0 else ""))
        if pending:
            from ..review.send import SendPending

            raise SendPending(f"{pending} stud{'y' if pending == 1 else 'ies'} still pending; the results are kept, "
                               f"run `cacpipe review send {first}` again when the PACS is back")
        return
    if to is not None:
        raise click.UsageError("--to goes with a scan's output folder OUT; with files, give AE@HOST:PORT first")
    if len(args) < 2:
        raise click.UsageError("give a scan's output folder OUT (with manifest.json), or AE@HOST:PORT and files")
    missing = [a for a in args[1:] if not Path(a).exists()]
    if missing:
        raise click.UsageError(f"not found: {', '.join(missing)}")
    paths = [Path(a) for a in args[1:]]
    files = [q for p in paths for q in (sorted(p.rglob("*.dcm")) if p.is_dir() else [p])]
    report = send_outputs(files, args[0], calling_ae=calling_ae, timeout_s=timeout)
    _print_send(report)
    if report["failed"]:
        raise CacpipeError(f"{len(report['failed'])} of {len(files)} object(s) were not stored")


# --- cacpipe review apply ----------------------------------------------------------------------

def _gather_corrections(out: Path, given: tuple[Path, ...]) -> list:
    from ..errors import InputDataError
    from ..review.corrections import read_corrections

    paths = list(given) or ([out / "corrections"] if (out / "corrections").is_dir() else [])
    if not paths:
        raise InputDataError(f"no corrections given: save the review pages' downloads in {out / 'corrections'}/ "
                             "or pass them with -c FILE")
    files = [q for p in paths for q in (sorted(p.glob("*.json")) if p.is_dir() else [p])]
    docs = [c for f in files for c in read_corrections(f)]
    if not docs:
        raise InputDataError(f"no corrections files (*.json) in {', '.join(str(p) for p in paths)}")
    return docs


def _study_folders(out: Path) -> tuple[dict[str, Path], dict | None]:
    """study_uid -> study folder (with result.json), and the scan manifest when OUT is a scan's output."""
    import json

    manifest = None
    folders: dict[str, Path] = {}
    mpath = out / "manifest.json"
    if mpath.exists():
        from ..scan.manifest import load_manifest

        manifest = load_manifest(out)
        for e in manifest["studies"].values():
            if e.get("status") == "done" and e.get("result"):
                folders[e["study_uid"]] = (out / e["result"]).parent
    candidates = [out / "result.json"] if (out / "result.json").exists() else sorted(out.rglob("result.json"))
    for p in candidates:
        try:
            uid = (json.loads(p.read_text()).get("study") or {}).get("study_uid")
        except (OSError, ValueError):
            continue
        if uid and uid not in folders:
            folders[uid] = p.parent
    return folders, manifest


class _ScoredCT:
    """The scored CT of each study: --ct, or read again from the scan's export (discovered once)."""

    def __init__(self, out: Path, manifest: dict | None, ct_path: Path | None, export: Path | None):
        self.out, self.manifest, self.ct_path, self.export = out, manifest, ct_path, export
        self._studies = None

    def load(self, result, settings):
        """The scored series (a LoadedSeries: volume, and the source headers for DICOM outputs)."""
        from ..errors import InputDataError
        from ..ingest import discover, group_studies, load_series, read_ct

        if self.ct_path is not None:
            return read_ct(self.ct_path, series_uid=result.study.series_uid or None)
        export = self.export or Path((self.manifest or {}).get("export") or "")
        if not str(export) or not export.exists():
            raise InputDataError(f"the scan's export {export or '(unknown)'} is not there: pass --export DIR (where "
                                 "it is now) or --ct CT (one study)")
        if self._studies is None:
            import tempfile

            self._work = tempfile.TemporaryDirectory(prefix="cacpipe-apply-")
            disc = discover(export, self._work.name, progress=False, exclude=(self.out,))
            self._studies, _ = group_studies(disc.headers)
        for st in self._studies:
            if st.study_uid == result.study.study_uid:
                for series in st.series:
                    if series.series_uid == result.study.series_uid:
                        return load_series(series, settings.assembly)
        raise InputDataError(f"series {result.study.series_uid} of study {result.study.study_uid} is not in {export}")


def requantify(ct, labels, original, corrections, calibration_factor=None, severity=None):
    """(corrected label map, corrected and finalised record, audit trail) of one study: the reader's
    label edits (cacpipe.review.corrections), then the pipeline's quantification and flag rules."""
    import copy

    from ..labels import ARTERIES
    from ..quant.quantify import quantify
    from ..quant.validity import finalise
    from ..review.corrections import check_study, corrected_labels, reader_flags

    check_study(original, corrections)
    lab, audit = corrected_labels(ct, labels, original, corrections)
    new_labels = labels.with_array(lab)
    # an artery keeps its assessed state: one whose lesions were all deleted is assessed with 0
    numbers = quantify(ct, new_labels, calibration_factor=calibration_factor,
                       assessed={a: original.arteries[a].assessed for a in ARTERIES}, severity=severity)
    res = copy.deepcopy(original)
    res.arteries, res.lesions = numbers.arteries, numbers.lesions
    res.flags += reader_flags(original, corrections, len(audit))
    return new_labels, finalise(res), audit


def _rebuild_outputs(study_dir: Path, loaded, labels, corrected, settings, corrections, salt: str | None,
                     organization: str = "") -> dict:
    """Rebuild the study's review page, overlays, SEG, SC and a new SR from the corrected map and record.

    The new SR is VERIFIED by the last reader and references the SR it replaces; the derived files
    of the uncorrected result (overlays/, dicom/) are replaced (the model's label map and the
    original numbers stay: labels.nii.gz and result.json 'original'). Returns build_review's paths."""
    import shutil

    import pydicom

    from ..review import build_review

    previous = []
    old_sr = study_dir / (corrected.outputs.get("sr") or "dicom/sr.dcm")
    if old_sr.exists():
        previous.append(pydicom.dcmread(str(old_sr)))
    last = max(corrections, key=lambda c: (c.time, c.reader))
    verification = {"observer": last.reader, "organization": organization, "previous": previous}
    sources = loaded.sources if settings.review.dicom else None
    for sub in ("overlays", "dicom"):
        shutil.rmtree(study_dir / sub, ignore_errors=True)
    review = settings.review.replace(salt=None, dicom=settings.review.dicom and sources is not None)
    written = build_review(study_dir, loaded.volume, labels, corrected, sources, review, salt=salt,
                           verification=verification)
    return {k: v for k, v in written.items() if k != "dicom_skipped"}


def _apply_salt(original, salt: str | None) -> str | None:
    """The anonymisation secret the study's page was made with: this installation's, or ``--salt``
    (checked against the secret id the result records)."""
    from ..config import secret_id
    from ..errors import ConfigError

    anon = original.pipeline.get("anonymisation") or {}
    if anon.get("secret") == "given":
        if not salt:
            raise ConfigError("the review page was made with a given anonymisation secret (secret id "
                              f"{anon.get('secret_id')}); pass it with --salt to rebuild the page")
        if anon.get("secret_id") and secret_id(salt) != anon["secret_id"]:
            raise ConfigError(f"--salt is not the secret the page was made with (id {secret_id(salt)}, the result "
                              f"says {anon['secret_id']})")
        return salt
    return None


def _apply_one(study_dir: Path, docs: list, cts: _ScoredCT, cases: Path | None, salt: str | None = None,
               organization: str = "") -> str:
    import json

    from ..config import Settings
    from ..errors import GeometryError
    from ..files import make_private_dir, protect, write_private_text
    from ..quant.severity import SeverityModel
    from ..review.corrections import applied_corrections, corrected_json, merge_corrections, original_record
    from ..scan.layout import write_atomic
    from ..volume import Volume

    raw = json.loads((study_dir / "result.json").read_text())
    original = original_record(raw)
    corrections = merge_corrections(applied_corrections(raw), docs)
    settings = Settings.from_dict(_without_secret(original.pipeline.get("settings") or {}),
                                  "result.json pipeline.settings")
    page_salt = _apply_salt(original, salt) if settings.review.enabled else None
    labels = Volume.read(study_dir / (original.outputs.get("labels") or "labels.nii.gz"))
    loaded = cts.load(original, settings)
    ct = loaded.volume
    shape = list((original.ct or {}).get("shape_zyx") or ct.shape)
    if ct.shape != labels.shape or list(ct.shape) != shape:
        raise GeometryError(f"{study_dir}: CT {ct.shape}, labels {labels.shape} and the record's grid {shape} differ; "
                            "is this the scored series?")
    if not ct.same_grid(labels, tol=1e-3):
        labels = ct.with_array(labels.array)  # NIfTI round trips may move the origin by float noise
    severity = SeverityModel.load(settings.quant.severity_model) if settings.quant.severity_model else None
    new_labels, corrected, audit = requantify(ct, labels, original, corrections, settings.quant.calibration_factor,
                                              severity)
    tmp = study_dir / ".labels_corrected.tmp.nii.gz"
    new_labels.write(tmp)
    tmp.replace(study_dir / "labels_corrected.nii.gz")
    protect([study_dir / "labels_corrected.nii.gz"])  # owner-only, as every output with patient data
    note = ""
    if settings.review.enabled:  # every output a reader or PACS sees shows the corrected result
        corrected.outputs.update(_rebuild_outputs(study_dir, loaded, new_labels, corrected, settings, corrections,
                                                  page_salt, organization))
        if "sr" not in corrected.outputs:
            corrected.outputs.pop("seg", None), corrected.outputs.pop("sc", None)
            note = "; page and overlays rebuilt (no DICOM outputs: no source DICOM headers)"
        else:
            note = "; page, overlays, SEG, SC and a VERIFIED SR rebuilt"
    doc = corrected_json(original, corrected, corrections, audit, "labels_corrected.nii.gz")
    send = (doc.get("pipeline") or {}).get("send")
    if isinstance(send, dict) and "sr" in corrected.outputs:  # the new objects still have to reach the PACS
        send.update(state="pending", error="new outputs after review apply")
        note += f"; `cacpipe review send` sends them to {send.get('target')}"
    write_atomic(study_dir / "result.json", json.dumps(doc, indent=2, default=str))
    if cases is not None:
        case = cases / training_case_id(original.study.patient_id, original.study.study_uid, page_salt)
        make_private_dir(case)  # patient images and the real PatientID: owner-only (cacpipe.files)
        ct.write(case / "ct.nii.gz")
        new_labels.write(case / "labels.nii.gz")
        write_private_text(case / "patient.txt", original.study.patient_id + "\n")
        protect([case / "ct.nii.gz", case / "labels.nii.gz"])
    o, c = original.total, corrected.total
    def fmt(t):
        return ("n/a" if t.agatston is None else f"{t.agatston:.1f}") + f" ({t.category or 'no category'}, " \
            f"{t.cac_drs or 'no CAC-DRS'})"
    readers = ", ".join(sorted({x.reader for x in corrections}))
    return f"{study_dir}: total Agatston {fmt(o)} -> {fmt(c)}; {len(audit)} change(s) by {readers}{note}"


def training_case_id(patient_id: str, study_uid: str, salt: str | None = None) -> str:
    """A pseudonymous training case id: the anonymised patient id (keyed by the anonymisation secret)
    and 8 hex digits of the study, e.g. ``anon-1a2b3c4d5e_9f8e7d6c``. Case ids end up in nnU-Net's
    files and so near a model zip: they never carry the PatientID or StudyInstanceUID (the real
    patient id stays in the case's patient.txt, which keeps a patient's studies in one fold)."""
    import hashlib

    from ..review.options import anonymised_id

    return f"{anonymised_id(patient_id, salt)}_{hashlib.sha1(study_uid.encode()).hexdigest()[:8]}"


def _without_secret(tree: dict) -> dict:
    """Recorded settings with the anonymisation secret's public name removed (it is no secret)."""
    import copy

    tree = copy.deepcopy(tree)
    if isinstance(tree.get("review"), dict):
        tree["review"]["salt"] = None
    return tree


@command.command("apply")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-c", "--corrections", "given", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Corrections JSON file(s) from the review pages, or folders of them (repeat). "
                   "Default: every *.json in OUT/corrections/.")
@click.option("--ct", "ct_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="The scored CT (NIfTI or DICOM folder) when OUT is one study; default: read again from the "
                   "scan's export named in OUT/manifest.json.")
@click.option("--export", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Where the scan's export is now, if it moved.")
@click.option("--training-cases", "cases", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write each corrected study as a training case CASES/<anon-id>_<study hash>/ (ct.nii.gz, "
                   "labels.nii.gz, patient.txt) for `make train DATA=CASES`; case ids are pseudonymous.")
@click.option("--salt", default=None, help="The anonymisation secret the review pages were made with, when it was "
                                          "given (not this installation's); needed to rebuild them.")
@click.option("--organization", default="", help="The readers' organisation, named in the verified SR.")
def apply(out: Path, given: tuple[Path, ...], ct_path: Path | None, export: Path | None, cases: Path | None,
          salt: str | None, organization: str) -> None:
    """Apply readers' corrections to the studies under OUT (a scan's output folder or one study folder).

    Each study's numbers are recomputed from its corrected label map with the pipeline's code;
    result.json keeps the original numbers under 'original' and every applied correction under
    'corrections'; labels_corrected.nii.gz is written next to labels.nii.gz (which is kept); the review
    page, overlays, SEG and SC are rebuilt from the corrected map, with a new SR that is VERIFIED by the
    reader and references the SR it replaces (`cacpipe review send OUT` sends them where the study's
    outputs went); cohort.csv and index.html are rebuilt. Applying again adds new corrections to those
    already applied.
    """
    from ..errors import CacpipeError, InputDataError

    docs = _gather_corrections(out, given)
    folders, manifest = _study_folders(out)
    by_study: dict[str, list] = {}
    for d in docs:
        by_study.setdefault(d.study_uid, []).append(d)
    missing = sorted(set(by_study) - set(folders))
    if ct_path is not None and len(by_study) > 1:
        raise click.UsageError("--ct names one study's CT; the corrections are for several studies")
    cts = _ScoredCT(out, manifest, ct_path, export)
    failed = 0
    for uid in sorted(by_study):
        if uid in missing:
            click.echo(f"FAILED study {uid}: no result.json for it under {out}", err=True)
            failed += 1
            continue
        try:
            click.echo(_apply_one(folders[uid], by_study[uid], cts, cases, salt, organization))
        except CacpipeError as exc:
            click.echo(f"FAILED {folders[uid]}: {exc}", err=True)
            failed += 1
    if manifest is not None:
        from ..scan.cohort import write_cohort

        click.echo(f"cohort written: {write_cohort(out, manifest)}")
    if (out / "index.html").exists():
        from ..review import build_index

        click.echo(f"index written: {build_index(out)}")
    if failed:
        raise InputDataError(f"{failed} of {len(by_study)} corrected stud{'y' if len(by_study) == 1 else 'ies'} "
                             "could not be applied (see above)")
