"""Frame <-> model pixel mapping: exact round trip, pixel-edge convention, real resize."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvcore.data.bbox import frame_to_model, model_to_frame, whole_image_bbox


def test_round_trip_is_exact_for_dyadic_scales_numpy_and_torch():
    """Exact in floating point when every intermediate is representable (1/64 px grid)."""
    rng = np.random.default_rng(0)
    kp = rng.integers(-50 * 64, 700 * 64, size=(5, 3, 7, 2)) / 64.0  # (n, V, K, 2)
    bbox = np.concatenate(
        [rng.integers(0, 100, (5, 3, 2)), np.tile([[512.0, 1024.0]], (5, 3, 1))], -1
    )  # [x, y, h, w], scale 256/512 and 256/1024
    model = frame_to_model(kp, bbox, (256, 256))
    assert np.array_equal(model_to_frame(model, bbox, (256, 256)), kp)
    kt = torch.as_tensor(kp)
    mt = frame_to_model(kt, torch.as_tensor(bbox), (256, 256))
    assert torch.equal(model_to_frame(mt, torch.as_tensor(bbox), (256, 256)), kt)
    np.testing.assert_array_equal(mt.numpy(), model)


def test_round_trip_for_arbitrary_boxes_to_rounding():
    """Arbitrary floats: equal up to a few ulps (the subtraction of the offset rounds)."""
    rng = np.random.default_rng(1)
    kp = rng.uniform(0, 1000, size=(100, 4, 2))
    bbox = np.column_stack([rng.uniform(-20, 300, (100, 2)), rng.uniform(30, 900, (100, 2))])
    back = model_to_frame(frame_to_model(kp, bbox, (224, 160)), bbox, (224, 160))
    np.testing.assert_allclose(back, kp, rtol=0, atol=1e-10)


def test_pixel_edges_map_to_pixel_edges():
    bbox = np.array([10.0, 20.0, 40.0, 80.0])  # x, y, h, w
    frame = np.array([[9.5, 19.5], [89.5, 59.5], [10.0, 20.0]])  # crop corners, first centre
    model = frame_to_model(frame, bbox, (20, 40))  # scale 1/2
    np.testing.assert_array_equal(model, [[-0.5, -0.5], [39.5, 19.5], [-0.25, -0.25]])


def test_whole_image_bbox_is_identity_and_nan_stays_nan():
    sizes = np.array([[1024, 1280], [48, 64]])
    bbox = whole_image_bbox(sizes)
    np.testing.assert_array_equal(bbox, [[0, 0, 1024, 1280], [0, 0, 48, 64]])
    kp = np.array([[[3.25, 7.5], [np.nan, np.nan]], [[0.0, 47.0], [63.0, 1.0]]])
    out = frame_to_model(kp, bbox, sizes)  # per-row image sizes (n, 2)
    np.testing.assert_array_equal(out, kp)


def test_inputs_are_not_mutated_and_dtype_kept():
    kp = torch.tensor([[[1.0, 2.0]]], dtype=torch.float32)
    bbox = torch.tensor([[5.0, 6.0, 10.0, 20.0]], dtype=torch.float64)
    before = kp.clone(), bbox.clone()
    out = model_to_frame(frame_to_model(kp, bbox, (16, 16)), bbox, (16, 16))
    assert out.dtype == torch.float32 and out is not kp
    assert torch.equal(kp, before[0]) and torch.equal(bbox, before[1])
    torch.testing.assert_close(out, kp)


@pytest.mark.parametrize("out_hw", [(32, 48), (64, 40)])
def test_convention_matches_crop_and_antialiased_resize(out_hw):
    """A Gaussian blob drawn at a frame point lands at frame_to_model of that point."""
    height, width = 120, 160
    centre = np.array([71.3, 52.8])  # x, y in frame pixels
    ys, xs = np.mgrid[0:height, 0:width]
    frame = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 6.0**2))
    bbox = np.array([30.0, 20.0, 80.0, 100.0])  # x, y, h, w
    crop = torch.as_tensor(frame[20:100, 30:130])[None, None]
    model_img = F.interpolate(crop, size=out_hw, mode="bilinear", antialias=True)[0, 0].numpy()
    my, mx = np.mgrid[0 : out_hw[0], 0 : out_hw[1]]
    centroid = np.array([(model_img * mx).sum(), (model_img * my).sum()]) / model_img.sum()
    expected = frame_to_model(centre[None], bbox, out_hw)[0]
    np.testing.assert_allclose(centroid, expected, atol=0.02)
