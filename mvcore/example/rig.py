"""The example's cameras: a calibrated rig with lens distortion around the box."""

from __future__ import annotations

import string

import numpy as np

from mvcore.geometry import CameraGroup, rodrigues_to_matrix_np

__all__ = ["make_cameras"]


def _matrix_to_rodrigues(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix ``(3, 3)`` -> Rodrigues vector ``(3,)`` (via a unit quaternion; robust
    at every angle, including 180 degrees)."""
    m = rot
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = np.array(
            [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        )
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = np.zeros(4)
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    if q[0] < 0:
        q = -q
    norm = np.linalg.norm(q[1:])
    if norm < 1e-15:
        return np.zeros(3)
    return 2.0 * np.arctan2(norm, q[0]) * q[1:] / norm


def make_cameras(rng: np.random.Generator, num_views: int, image_size: int) -> CameraGroup:
    """Cameras around the box, looking at its centre from 37-54 degrees elevation.

    Intrinsics are realistic for ``image_size`` square images (about 40 degrees field of
    view), with small radial and tiny tangential distortion. Translations are computed from
    the Rodrigues rotation actually stored, so the file is the exact camera model.
    """
    names = [f"cam_{string.ascii_lowercase[v]}" for v in range(num_views)]
    scale = image_size / 256.0
    base = rng.uniform(0.0, 2 * np.pi / num_views)
    up = np.array([0.0, 0.0, 1.0])
    intr, dist, rvecs, tvecs = [], [], [], []
    for v in range(num_views):
        az = base + 2 * np.pi * v / num_views + rng.uniform(-0.15, 0.15)
        el = rng.uniform(0.65, 0.95)
        distance = rng.uniform(620.0, 700.0)
        target = np.array([rng.normal(0.0, 8.0), rng.normal(0.0, 8.0), 30.0])
        centre = target + distance * np.array(
            [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]
        )
        z_c = (target - centre) / np.linalg.norm(target - centre)
        x_c = np.cross(z_c, up)
        x_c /= np.linalg.norm(x_c)
        y_c = np.cross(z_c, x_c)
        roll = rng.uniform(-0.06, 0.06)
        x_r = np.cos(roll) * x_c + np.sin(roll) * y_c
        y_r = -np.sin(roll) * x_c + np.cos(roll) * y_c
        rvec = _matrix_to_rodrigues(np.stack([x_r, y_r, z_c]))
        rot = rodrigues_to_matrix_np(rvec)
        rvecs.append(rvec)
        tvecs.append(-rot @ centre)
        f = rng.uniform(380.0, 420.0) * scale
        cx = (image_size - 1) / 2 + rng.uniform(-3.0, 3.0) * scale
        cy = (image_size - 1) / 2 + rng.uniform(-3.0, 3.0) * scale
        fy = f * (1.0 + rng.uniform(-0.004, 0.004))
        intr.append([[f, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        dist.append(
            [
                rng.uniform(-0.12, -0.04),
                rng.uniform(0.0, 0.05),
                rng.uniform(-4e-4, 4e-4),
                rng.uniform(-4e-4, 4e-4),
                0.0,
            ]
        )
    return CameraGroup(
        names=names,
        sizes=np.full((num_views, 2), float(image_size)),
        intrinsics=np.array(intr),
        distortions=np.array(dist),
        rotations=np.array(rvecs),
        translations=np.array(tvecs),
    )
