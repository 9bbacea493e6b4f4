"""Camera rigs for the geometry tests: random torch rigs, a numpy reference projection and
anipose calibration text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mvcore.geometry import rodrigues_to_matrix

F64 = torch.float64

GOOD_CAM = """
[cam_{i}]
name = "{name}"
size = [ 1280, 1024,]
matrix = [ [ 800.0, 0.5, 640.0,], [ 0.0, 810.0, 512.0,], [ 0.0, 0.0, 1.0,],]
distortions = [ -0.25, 0.01, 0.001, -0.002, 0.0,]
rotation = [ 0.1, -0.2, 0.3,]
translation = [ 1.0, 2.{i:02d}, 30.0,]
"""


def write_toml(tmp_path: Path, text: str) -> Path:
    """Write ``text`` to ``tmp_path / calibration.toml``; return the path."""
    path = tmp_path / "calibration.toml"
    path.write_text(text)
    return path


def two_cams(**replace: str) -> str:
    """Two good cameras; ``replace`` maps a line prefix of cam_1 (e.g. 'matrix') to a new line."""
    cam1 = GOOD_CAM.format(i=1, name="b")
    for key, line in replace.items():
        lines = cam1.splitlines()
        lines = [line if ln.startswith(f"{key} =") else ln for ln in lines]
        if line == "":
            lines = [ln for ln in lines if ln]
        cam1 = "\n".join(lines) + "\n"
    return GOOD_CAM.format(i=0, name="a") + cam1 + "\n[metadata]\n"


def look_at(centers: torch.Tensor) -> torch.Tensor:
    """World->camera ``[R|t] (V, 3, 4)`` of cameras at ``centers (V, 3)`` facing the origin."""
    z = -centers / centers.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=centers.dtype).expand_as(z)
    x = torch.linalg.cross(up, z)
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x)
    rot = torch.stack([x, y, z], dim=-2)
    t = -(rot @ centers.unsqueeze(-1))
    return torch.cat([rot, t], dim=-1)


def random_rig(
    num_views: int = 4, seed: int = 0, dtype: torch.dtype = F64, distortion: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random cameras ~6 units from the origin: intrinsics (V,3,3), extrinsics, distortions."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(num_views, 3, generator=g, dtype=F64)
    dirs[:, 2] = dirs[:, 2].abs() * 0.5 + 0.2
    centers = 6.0 * dirs / dirs.norm(dim=-1, keepdim=True)
    ext = look_at(centers)
    # a small random roll so R is not special
    roll = rodrigues_to_matrix(torch.randn(num_views, 3, generator=g, dtype=F64) * 0.05)
    ext = torch.cat([roll @ ext[:, :, :3], roll @ ext[:, :, 3:]], dim=-1)
    f = 700 + 300 * torch.rand(num_views, generator=g, dtype=F64)
    k = torch.zeros(num_views, 3, 3, dtype=F64)
    k[:, 0, 0], k[:, 1, 1] = f, f * 1.02
    k[:, 0, 1] = 2.0 * torch.randn(num_views, generator=g, dtype=F64)  # skew
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = 640.3, 511.7, 1.0
    d = torch.zeros(num_views, 5, dtype=F64)
    if distortion:
        d[:, 0] = -0.3 + 0.3 * torch.rand(num_views, generator=g, dtype=F64)
        d[:, 1] = 0.05 * torch.randn(num_views, generator=g, dtype=F64)
        d[:, 2:4] = 0.002 * torch.randn(num_views, 2, generator=g, dtype=F64)
        d[:, 4] = 0.01 * torch.randn(num_views, generator=g, dtype=F64)
    return k.to(dtype), ext.to(dtype), d.to(dtype)


def random_points(shape: tuple[int, ...], seed: int = 1, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape + (3,), generator=g, dtype=F64) * 2.0 - 1.0).to(dtype)


def reference_project(x: np.ndarray, k: np.ndarray, ext: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Plain numpy ``cv2.projectPoints`` for one camera: ``x (N, 3)`` -> ``(N, 2)``."""
    c = x @ ext[:, :3].T + ext[:, 3]
    a, b = c[:, 0] / c[:, 2], c[:, 1] / c[:, 2]
    k1, k2, p1, p2, k3 = d
    r2 = a * a + b * b
    rad = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = a * rad + 2 * p1 * a * b + p2 * (r2 + 2 * a * a)
    yd = b * rad + p1 * (r2 + 2 * b * b) + 2 * p2 * a * b
    return np.stack([k[0, 0] * xd + k[0, 1] * yd + k[0, 2], k[1, 1] * yd + k[1, 2]], axis=-1)


def assert_finite_grads(*tensors: torch.Tensor) -> None:
    for t in tensors:
        assert t.grad is not None and torch.isfinite(t.grad).all(), t.grad
