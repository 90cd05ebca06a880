"""Stage-2 speed settings change nothing but rounding: several tiles per forward pass and the
channels-last layout against nnU-Net's own one-tile sliding window, and bfloat16 against float32, on
a real stage-1 crop of a phantom with the shipped demo model. (Their speed is measured by
`make bench`, their effect on Agatston by `python -m devtools.bench.precision`; not here.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cacpipe.config import SegmentSettings
from cacpipe.heart import heart_crop
from cacpipe.segment import find_model, segment
from cacpipe.segment.predict import bf16_for, cpu_has_native_bf16, load_predictor, tile_batch_for
from cacpipe.volume import Volume


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    model = find_model(None, tmp_path_factory.mktemp("no_models"), allow_demo=True)
    return model


@pytest.fixture(scope="module")
def crop(small_phantom, demo):
    """A block of the stage-1 crop that needs 2 x 2 x 2 tiles of the demo model's 32 x 48 x 48 patch."""
    from cacpipe.config import HeartSettings

    st1 = heart_crop(small_phantom.ct, HeartSettings(method="fallback"), target_spacing_zyx=demo.spacing_zyx,
                     device="cpu", min_slices=1)
    ct = st1.cropped_ct
    assert min(s - p for s, p in zip(ct.shape, (40, 64, 64), strict=True)) >= 0, ct.shape
    c = [(s - b) // 2 for s, b in zip(ct.shape, (40, 64, 64), strict=True)]
    block = np.ascontiguousarray(ct.array[c[0]:c[0] + 40, c[1]:c[1] + 64, c[2]:c[2] + 64])
    return Volume(block, ct.spacing_zyx, ct.origin_xyz, ct.direction)  # origin is irrelevant here


def _logits(model, cfg: SegmentSettings, ct, reference: bool = False) -> torch.Tensor:
    """Sliding-window logits of fold 0 on the preprocessed ``ct`` (nnU-Net's own loop if ``reference``)."""
    from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor, *_ = load_predictor(model, cfg, "cpu")
    ppa = PreprocessAdapterFromNpy([ct.array.astype(np.float32)[None]], [None], [{"spacing": list(ct.spacing_zyx)}],
                                   [None], predictor.plans_manager, predictor.dataset_json,
                                   predictor.configuration_manager, num_threads_in_multithreaded=1, verbose=False)
    data = next(ppa)["data"]
    predictor.network.load_state_dict(predictor.list_of_parameters[0])
    slicers = predictor._internal_get_sliding_window_slicers(data.shape[1:])
    assert len(slicers) == 8
    with torch.inference_mode():
        if reference:
            return nnUNetPredictor._internal_predict_sliding_window_return_logits(predictor, data, slicers, False).float()
        return predictor._internal_predict_sliding_window_return_logits(data, slicers, False).float()


@pytest.mark.slow
def test_batched_channels_last_tiles_equal_nnunets_sliding_window(demo, crop):
    ref = _logits(demo, SegmentSettings(tile_batch=1, channels_last=False, bf16=False), crop, reference=True)
    two = _logits(demo, SegmentSettings(tile_batch=2, channels_last=False, bf16=False), crop)
    # nnU-Net accumulates the Gaussian-weighted logits (weights up to 10) in float16: its large negative
    # logits come out rounded to about 1 (seen: -15.09 -> -15.0); near the 0.5 threshold they are fine.
    assert torch.allclose(two, ref, atol=0.25, rtol=0.08), (two - ref).abs().max()
    assert ((two > 0) == (ref > 0)).float().mean() > 0.9999
    for batch, cl in ((3, True), (8, False), (1, True)):  # 3: the last batch is a partial one
        got = _logits(demo, SegmentSettings(tile_batch=batch, channels_last=cl, bf16=False), crop)
        assert got.shape == ref.shape
        # Same float32 sums as the two-tile loop: only the convolution kernels differ.
        assert torch.allclose(got, two, atol=1e-3, rtol=1e-4), (batch, cl, (got - two).abs().max())


@pytest.mark.slow
def test_segment_labels_same_with_and_without_tile_batching_and_close_under_bf16(demo, crop):
    one = segment(crop, demo, SegmentSettings(tile_batch=1, bf16=False, folds=(0,)), device="cpu")
    many = segment(crop, demo, SegmentSettings(tile_batch=4, channels_last=True, bf16=False, folds=(0,)), device="cpu")
    assert one.labels.shape == many.labels.shape == crop.shape
    assert np.mean(one.labels.array == many.labels.array) > 0.9999
    assert many.labels.array.any()  # the block holds arteries: a map of zeros would agree trivially
    assert (one.precision, many.precision, many.tile_batch) == ("fp32", "fp32", 4)
    half = segment(crop, demo, SegmentSettings(bf16=True, folds=(0,)), device="cpu")
    assert half.precision == "bf16" and half.settings()["precision"] == "bf16"
    # bfloat16 keeps 8 bits of mantissa: a few boundary voxels may flip (held-out phantoms: 1e-5 of the
    # crop, same Agatston; docs/performance.md), never the map as a whole.
    fg = (one.labels.array > 0) | (half.labels.array > 0)
    assert np.mean(one.labels.array[fg] == half.labels.array[fg]) > 0.9


def test_tile_batch_defaults_and_validation():
    from cacpipe.errors import ConfigError

    assert tile_batch_for(SegmentSettings(), "cpu", (32, 48, 48)) == 8  # the demo model's patch
    assert tile_batch_for(SegmentSettings(), "cpu", (112, 128, 160)) == 1  # the paper's
    assert tile_batch_for(SegmentSettings(), "cuda:0", (32, 48, 48)) == 1
    assert bf16_for(SegmentSettings(), "cpu") == cpu_has_native_bf16()
    assert not bf16_for(SegmentSettings(bf16=True), "cuda")  # CUDA: nnU-Net's own float16 autocast
    assert bf16_for(SegmentSettings(bf16=True), "cpu") and not bf16_for(SegmentSettings(bf16=False), "cpu")
    assert tile_batch_for(SegmentSettings(tile_batch=2), "cuda") == 2
    with pytest.raises(ConfigError, match="tile_batch"):
        SegmentSettings(tile_batch=0).validate()
