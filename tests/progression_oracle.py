"""A scan analysis that segments perfectly: the phantom's own label map (found by PatientID /
StudyInstanceUID in ``$CACPIPE_TEST_TRUTH``), quantified by cacpipe's real quantification.

Lets tests run ``cacpipe scan`` (ingest, runner, layout, result.json) on serial phantom studies in
seconds, so that ``cacpipe progression`` is tested on real scan outputs without the network.
"""

from __future__ import annotations

import os
from pathlib import Path


def oracle_analyse(series, out_dir, settings):
    from cacpipe.evaluation.lesions import on_grid
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import finalise
    from cacpipe.record import StudyResult
    from cacpipe.volume import Volume

    volume, info = series.volume, series.identity
    root = Path(os.environ["CACPIPE_TEST_TRUTH"])
    tdir = root / info.study_uid if (root / info.study_uid).is_dir() else root / info.patient_id
    truth = Volume.read(tdir / "labels.nii.gz")
    lab = volume.with_array(on_grid(truth, volume, labels=True).astype("uint8"))
    out = Path(out_dir)
    lab.write(out / "labels.nii.gz")
    volume.write(out / "ct.nii.gz")
    q = quantify(volume, lab)
    result = StudyResult(
        study=info, flags=list(series.flags), arteries=q.arteries, lesions=q.lesions,
        pipeline={"version": "test", "heart_method": "none", "model": {"name": "phantom-truth", "is_demo": True},
                  "device": "cpu", "settings": settings.to_record()},
        outputs={"labels": "labels.nii.gz", "ct": "ct.nii.gz"})
    result.set_grid(volume)
    return finalise(result)
