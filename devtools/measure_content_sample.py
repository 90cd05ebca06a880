"""Cost of the content sample (cacpipe.ingest.content_sample) in discovery on a clinical-size series.

Usage: ``python devtools/measure_content_sample.py FOLDER`` (FOLDER is written first when missing: a
512 x 512 x 400 phantom series). Times discovery with and without the sample (3 runs each, page cache
warm) and the sample alone.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cacpipe.ingest import discover
from cacpipe.ingest.content_sample import content_sample


def _no_sample(f, size: int) -> str:
    f.seek(0)
    return ""


def main(root: Path) -> None:
    if not root.exists():
        from cacpipe.phantom import PatientInfo, PhantomConfig, generate, write_study

        cfg = PhantomConfig.preset("small", shape_yx=(512, 512), pixel_mm=0.7, n_slices=400, slice_mm=1.0)
        write_study(cfg, root, PatientInfo(patient_id="CLIN"), phantom=generate(cfg))
    files = [p for p in root.rglob("*") if p.is_file()]
    print(f"{len(files)} files, {sum(p.stat().st_size for p in files) >> 20} MiB")
    module = sys.modules["cacpipe.ingest.discover"]  # the package exports the function under the same name
    with tempfile.TemporaryDirectory() as work:
        for label, fn in (("with sample", content_sample), ("without sample", _no_sample)):
            module.content_sample = fn
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                discover(root, work)
                times.append(round(time.perf_counter() - t0, 3))
            print(f"discovery {label}: {times} s")
    module.content_sample = content_sample
    t0 = time.perf_counter()
    for p in files:
        with open(p, "rb") as f:
            content_sample(f, p.stat().st_size)
    print(f"sample alone: {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
