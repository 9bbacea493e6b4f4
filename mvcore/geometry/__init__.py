"""Camera geometry: anipose calibration I/O (numpy) and batched differentiable torch ops."""

from mvcore.geometry.calibration import (
    CameraGroup,
    CameraTensors,
    load_calibration,
    rodrigues_to_matrix_np,
    save_calibration,
)
from mvcore.geometry.camera import (
    camera_pairs,
    distort_normalized,
    project_points,
    refine_points,
    reprojection_error,
    rodrigues_to_matrix,
    triangulate,
    triangulate_pairs,
    undistort_points,
)

__all__ = [
    "CameraGroup",
    "CameraTensors",
    "camera_pairs",
    "distort_normalized",
    "load_calibration",
    "project_points",
    "refine_points",
    "reprojection_error",
    "rodrigues_to_matrix",
    "rodrigues_to_matrix_np",
    "save_calibration",
    "triangulate",
    "triangulate_pairs",
    "undistort_points",
]
