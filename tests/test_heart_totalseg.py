"""TotalSegmentator run for real on tiny stand-in models written in its folder layout.

The stand-in networks have TotalSegmentator's real model folders, plans, trainers and label
maps but 2-4 features and zeroed output weights with a bias towards "heart", so they predict
heart everywhere: enough to exercise the mechanics (weight lookup, no download, no telemetry,
environment isolation, mask back on the CT grid), fast on CPU.
"""

import json
import os
import socket
import sys

import numpy as np
import pytest

from cacpipe import env
from cacpipe import flags as F
from cacpipe.config import HeartMethod, HeartSettings
from cacpipe.errors import ModelNotInstalledError
from cacpipe.heart import heart_crop, totalseg_status
from cacpipe.heart import totalseg as ts
from cacpipe.volume import Volume
from devtools.standin import write_standin_home


@pytest.fixture(scope="module")
def standin_home(tmp_path_factory):
    home = write_standin_home(tmp_path_factory.mktemp("totalseg_home"))
    # Usage statistics were switched on by an earlier TotalSegmentator run: we must switch them off.
    (home / "config.json").write_text(json.dumps({"totalseg_id": "totalseg_KEEPME", "send_usage_stats": True,
                                                  "prediction_counter": 3}))
    return home


def _small_ct(ph) -> Volume:
    """A 60 x 128 x 128 piece of the small phantom around the heart (keeps TotalSegmentator quick)."""
    ct = ph.ct
    sl = (slice(10, 70), slice(64, 192), slice(70, 198))
    origin = ct.index_to_physical(np.array([[10, 64, 70]]))[0]
    return Volume(np.ascontiguousarray(ct.array[sl]), ct.spacing_zyx, tuple(origin), ct.direction)


def test_status_reports_what_is_installed(standin_home, tmp_path):
    st = totalseg_status(standin_home, fast=False)
    assert st["installed"] and st["missing"] == [] and set(st["models"]) == {298, 293}
    st_fast = totalseg_status(standin_home, fast=True)
    assert not st_fast["installed"] and st_fast["missing"] == [297]
    assert "Dataset297_TotalSegmentator_total_3mm_1559subj" in st_fast["instructions"]
    # An incomplete folder (no checkpoint) is not installed.
    d = ts.model_dir(tmp_path / "nnunet" / "results", 298)
    d.mkdir(parents=True)
    (d / "plans.json").write_text("{}")
    assert totalseg_status(tmp_path)["missing"] == [298, 293]


@pytest.mark.slow
def test_totalsegmentator_runs_offline_without_stats_and_restores_env(standin_home, small_phantom, monkeypatch):
    real_connect = socket.socket.connect

    def no_network(sock, address):  # local (AF_UNIX) sockets are multiprocessing's, allowed
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("nnUNet_results", "/our/stage2/results")
    monkeypatch.setenv("nnUNet_raw", "/our/stage2/raw")
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", "/somewhere/else")  # an explicit home must win
    before = {k: os.environ.get(k) for k in (*env.NNUNET_PATHS, env.TOTALSEG_HOME, env.TOTALSEG_WEIGHTS)}

    from cacpipe.heart.stage1 import _choose_method

    assert _choose_method(HeartSettings(totalseg_home=str(standin_home)))[0] == "totalsegmentator"  # auto picks it
    ct = _small_ct(small_phantom)
    res = heart_crop(ct, HeartSettings(method=HeartMethod.TOTALSEGMENTATOR, totalseg_home=str(standin_home)),
                     device="cpu", min_slices=50)

    assert res.method == "totalsegmentator" and res.record.method == "totalsegmentator"
    codes = [f.code for f in res.flags]
    assert F.FALLBACK_HEART_LOCATOR not in codes
    # The stand-in says "heart" everywhere: the mask fills the CT grid, and QC says so.
    assert res.heart_mask.same_grid(ct) and res.heart_mask.array.dtype == np.uint8
    assert res.heart_mask.array.all()
    assert F.HEART_AT_EDGE in codes
    assert res.record.bbox_lo_zyx == (0, 0, 0) and res.record.bbox_hi_zyx == res.record.resampled_shape_zyx
    # Environment restored, telemetry off, unused part models not fetched.
    assert {k: os.environ.get(k) for k in before} == before
    # TotalSegmentator ran in its own process: its run-time patches of nnU-Net (made on import)
    # must not reach our stage 2 in this process
    assert "totalsegmentator.nnunet" not in sys.modules
    cfg = json.loads((standin_home / "config.json").read_text())
    assert cfg["send_usage_stats"] is False and cfg["totalseg_id"] == "totalseg_KEEPME"
    assert not list((standin_home / "nnunet" / "results").glob("Dataset291*"))


def test_download_guard_refuses_missing_models(tmp_path):
    import totalsegmentator.python_api as api

    original = api.download_pretrained_weights
    with ts._no_download_no_stats(tmp_path, fast=False):
        assert api.download_pretrained_weights is not original
        with pytest.raises(ModelNotInstalledError, match="Dataset293"):
            api.download_pretrained_weights(293)
        api.download_pretrained_weights(291)  # checked by TotalSegmentator, not needed for the heart
        with pytest.raises(ModelNotInstalledError):
            api.download_pretrained_weights(300)
    assert api.download_pretrained_weights is original


def test_auto_falls_back_when_weights_are_missing(small_phantom, tmp_path):
    res = heart_crop(small_phantom.ct, HeartSettings(totalseg_home=str(tmp_path)))
    flag = next(f for f in res.flags if f.code == F.FALLBACK_HEART_LOCATOR)
    assert "Dataset298" in flag.message and "Dataset293" in flag.message
