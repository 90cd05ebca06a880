"""Shared fixtures: small phantoms generated once per test session (per xdist worker)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Tests never touch the user's real model folders or send telemetry.
os.environ.setdefault("TOTALSEG_HOME_DIR", "/nonexistent-cacpipe-test-totalseg")
os.environ.setdefault("nnUNet_n_proc_DA", "0")
# Under xdist each worker gets its share of the cores for torch and BLAS (here and in the scans and
# trainings tests start as subprocesses): two workers of two threads each on two cores spent about
# 1.6 times the CPU of one thread each on the same demo-model test (OpenMP threads spin while waiting).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)
# Each test process gets its own empty model folder and demo-model cache: a user's installed
# models never leak into tests, and parallel workers never unpack the demo model into one folder.
# The same for the per-installation settings and secrets (the anonymisation secret).
for _var, _prefix in (("CACPIPE_MODEL_DIR", "cacpipe-test-models-"), ("CACPIPE_CACHE_DIR", "cacpipe-test-cache-"),
                      ("CACPIPE_CONFIG_DIR", "cacpipe-test-config-")):
    if _var not in os.environ:
        os.environ[_var] = tempfile.mkdtemp(prefix=_prefix)
        atexit.register(shutil.rmtree, os.environ[_var], True)


@pytest.fixture(scope="session")
def small_phantom():
    """The default small phantom (256x256x100 at 1.56 x 1.56 x 2 mm), generated in memory."""
    from cacpipe.phantom import PhantomConfig, generate

    return generate(PhantomConfig.preset("small"))


@pytest.fixture(scope="session")
def small_phantom_dir(tmp_path_factory):
    """The small phantom written to disk with its DICOM study (axial + localizer)."""
    from cacpipe.phantom import PhantomConfig
    from cacpipe.phantom.writer import write_phantom

    out = tmp_path_factory.mktemp("phantom_small")
    write_phantom(PhantomConfig.preset("small"), out)
    return out


@pytest.fixture(scope="session")
def tiny_demo_export(tmp_path_factory):
    """The demo export (three patients, a localizer, a contrast and a lung-kernel series to skip,
    DEMO003 zipped) on a 64 x 64 x 24 grid: what the runner tests scan with a threshold analysis.
    Shared by every module of a test process: a test that changes the export copies it first."""
    from cacpipe.phantom.demo_export import write_demo_export

    root = tmp_path_factory.mktemp("tiny_demo") / "export"
    write_demo_export(root, shape_yx=(64, 64), pixel_mm=400.0 / 64, n_slices=24)
    return root
