"""Camera geometry, the public import path of its modules:

- ``cameras``: ``CameraGroup`` (numpy rig) and ``CameraTensors`` (torch rig);
- ``anipose``: anipose calibration TOML files, ``load_calibration`` / ``save_calibration``;
- ``calibration_formats``: other tools' calibration files (OpenCV YAML / XML, Label3D / DANNCE
  ``.mat``) -> a ``CameraGroup``, ``convert_calibration`` (``mvcore calib convert``);
- ``rotations``: Rodrigues vectors <-> rotation matrices, torch and numpy;
- ``projection``: batched differentiable distortion, undistortion, projection, reprojection
  error (torch);
- ``triangulation``: batched differentiable DLT triangulation (all views, camera pairs) with
  cheirality and conditioning checks, and refinement (torch);
- ``homography``: plane homographies applied to image points.
"""

from mvcore.geometry.anipose import load_calibration, save_calibration
from mvcore.geometry.calibration_formats import (
    ConvertedCamera,
    convert_calibration,
    read_matlab_cameras,
    read_opencv_cameras,
    save_calibration_atomically,
)
from mvcore.geometry.cameras import CameraGroup, CameraTensors
from mvcore.geometry.homography import apply_homography
from mvcore.geometry.projection import (
    distort_normalized,
    project_points,
    reprojection_error,
    undistort_points,
)
from mvcore.geometry.rotations import (
    matrix_to_rodrigues_np,
    rodrigues_to_matrix,
    rodrigues_to_matrix_np,
)
from mvcore.geometry.triangulation import (
    DEFAULT_MIN_RAY_ANGLE,
    FLOAT32_RELATIVE_ERROR,
    TriangulatedPoints,
    camera_centers,
    camera_pairs,
    ray_angles,
    refine_points,
    triangulate,
    triangulate_checked,
    triangulate_pairs,
)

__all__ = [
    "DEFAULT_MIN_RAY_ANGLE",
    "FLOAT32_RELATIVE_ERROR",
    "CameraGroup",
    "CameraTensors",
    "ConvertedCamera",
    "apply_homography",
    "TriangulatedPoints",
    "camera_centers",
    "camera_pairs",
    "convert_calibration",
    "distort_normalized",
    "load_calibration",
    "matrix_to_rodrigues_np",
    "project_points",
    "read_matlab_cameras",
    "read_opencv_cameras",
    "ray_angles",
    "refine_points",
    "reprojection_error",
    "rodrigues_to_matrix",
    "rodrigues_to_matrix_np",
    "save_calibration",
    "save_calibration_atomically",
    "triangulate",
    "triangulate_checked",
    "triangulate_pairs",
    "undistort_points",
]
