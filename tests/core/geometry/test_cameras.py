"""Camera rigs: CameraGroup selection, rotations, extrinsics; CameraTensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from camera_rigs import two_cams, write_toml

from mvcore.errors import DataError
from mvcore.geometry import CameraTensors, load_calibration, rodrigues_to_matrix


def test_select(tmp_path: Path) -> None:
    group = load_calibration(write_toml(tmp_path, two_cams()))
    sub = group.select(["b", "a"])
    assert sub.names == ["b", "a"]
    np.testing.assert_array_equal(sub.intrinsics, group.intrinsics[::-1])
    np.testing.assert_array_equal(sub.extrinsics(), group.extrinsics()[::-1])
    assert group.select(["b"]).num_views == 1
    with pytest.raises(DataError) as info:
        group.select(["a", "front"])
    assert "front" in str(info.value) and "['a', 'b']" in str(info.value)
    with pytest.raises(DataError, match="duplicate"):
        group.select(["a", "a"])


def test_rotations_and_tensors(tmp_path: Path) -> None:
    group = load_calibration(write_toml(tmp_path, two_cams()))
    rot = group.rotation_matrices()
    np.testing.assert_allclose(
        rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12
    )
    torch_rot = rodrigues_to_matrix(torch.as_tensor(group.rotations))
    np.testing.assert_allclose(torch_rot.numpy(), rot, atol=1e-12)
    ext = group.extrinsics()
    assert ext.shape == (2, 3, 4)
    np.testing.assert_array_equal(ext[:, :, 3], group.translations)
    cams = group.to_tensors()
    assert isinstance(cams, CameraTensors) and cams.num_views == 2
    assert cams.intrinsics.dtype == torch.float32
    assert cams.intrinsics.shape == (2, 3, 3) and cams.extrinsics.shape == (2, 3, 4)
    assert cams.distortions.shape == (2, 5)
    c64 = cams.to(dtype=torch.float64)
    assert (
        c64.extrinsics.dtype == torch.float64 and c64.intrinsics.device == cams.intrinsics.device
    )
    with pytest.raises(ValueError, match="CameraTensors"):
        CameraTensors(cams.intrinsics, cams.intrinsics, cams.distortions)
