"""The example animal's ground-truth pose over time: 3D keypoints of a walk on the floor."""

from __future__ import annotations

import numpy as np

__all__ = ["KEYPOINT_NAMES", "simulate_pose"]

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "ear_left",
    "ear_right",
    "head",
    "neck",
    "spine",
    "hips",
    "tail_base",
    "tail_mid",
    "tail_tip",
)


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-smoothed white noise ``(n,)`` with correlation ``sigma`` frames."""
    half = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel /= np.sqrt(np.sum(kernel**2))
    return np.convolve(rng.standard_normal(n + 2 * half), kernel, mode="valid")


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def simulate_pose(rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """Ground-truth 3D keypoints ``(T, K, 3)`` [mm] of an animal walking on the floor.

    The neck follows a smooth random walk (speed and turn rate are smoothed noise) that steers
    back towards the box centre near its edge; the body bends with the turn rate, the head
    looks around and pitches, the tail wags.
    """
    dt = 1.0 / fps
    speed = np.clip(70.0 + 35.0 * _smooth_noise(rng, num_frames, 12.0), 5.0, 150.0)
    turn = 1.4 * _smooth_noise(rng, num_frames, 9.0)
    bend_noise = 0.10 * _smooth_noise(rng, num_frames, 15.0)
    head_yaw = 0.35 * _smooth_noise(rng, num_frames, 10.0)
    head_pitch = 0.35 + 0.25 * _smooth_noise(rng, num_frames, 12.0)
    wag = 0.30 * _smooth_noise(rng, num_frames, 8.0)
    bob = 2.5 * _smooth_noise(rng, num_frames, 4.0)
    pos = rng.uniform(-30.0, 30.0, size=2)
    psi = rng.uniform(-np.pi, np.pi)
    r_soft, r_max = 30.0, 60.0

    out = np.zeros((num_frames, len(KEYPOINT_NAMES), 3))
    for i in range(num_frames):
        omega = turn[i]
        r = float(np.hypot(*pos))
        if r > r_soft:
            desired = np.arctan2(-pos[1], -pos[0])
            omega += 5.0 * _wrap(desired - psi) * min(1.0, (r - r_soft) / (r_max - r_soft))
        psi += omega * dt
        pos = pos + speed[i] * dt * np.array([np.cos(psi), np.sin(psi)])
        r = float(np.hypot(*pos))
        if r > r_max:
            pos *= r_max / r
        bend = 0.22 * np.tanh(omega / 1.5) + bend_noise[i]

        def step(start: np.ndarray, yaw: float, length: float, z: float) -> np.ndarray:
            return np.array([start[0] + length * np.cos(yaw), start[1] + length * np.sin(yaw), z])

        neck = np.array([pos[0], pos[1], 32.0 + bob[i]])
        back = psi + np.pi
        spine = step(neck, back - bend, 34.0, 36.0 + bob[i])
        hips = step(spine, back - 2 * bend, 34.0, 32.0 + 0.5 * bob[i])
        tail_base = step(hips, back - 3 * bend, 26.0, 22.0)
        tail_mid = step(tail_base, back - 3 * bend + wag[i], 36.0, 9.0)
        tail_tip = step(tail_mid, back - 3 * bend + 2.2 * wag[i], 36.0, 3.0)
        yaw_h = psi + 0.8 * bend + head_yaw[i]
        fwd = np.array([np.cos(yaw_h), np.sin(yaw_h), 0.0])
        left = np.array([-np.sin(yaw_h), np.cos(yaw_h), 0.0])
        head = neck + 28.0 * fwd + np.array([0.0, 0.0, 6.0])
        pitch = head_pitch[i]
        nose = head + 22.0 * (np.cos(pitch) * fwd - np.array([0.0, 0.0, np.sin(pitch)]))
        ear_l = head + 14.0 * left - 13.0 * fwd + np.array([0.0, 0.0, 9.0])
        ear_r = head - 14.0 * left - 13.0 * fwd + np.array([0.0, 0.0, 9.0])
        out[i] = [nose, ear_l, ear_r, head, neck, spine, hips, tail_base, tail_mid, tail_tip]
    out[..., 2] = np.maximum(out[..., 2], 1.0)
    return out
