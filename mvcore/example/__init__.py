"""A built-in synthetic multi-camera project (``mvcore example-data DIR``).

Writes a small, geometrically exact Lightning Pose multiview project: an articulated animal
walking in a box, filmed by calibrated cameras with lens distortion. Every label is the exact
projection (``mvcore.geometry.project_points``, float64) of the ground-truth 3D keypoint, and
every rendered keypoint blob is an analytic Gaussian centred on that projection, so the
project can test 2D read-out, triangulation and 3D augmentation to sub-pixel precision and
train a small model on a CPU in minutes. Everything is deterministic from ``seed``.

Pixel convention (OpenCV, and ``mvcore.data.heatmaps``): pixel ``i`` is centred at ``i``.
World units are millimetres, z up, the floor is ``z = 0``.

Modules: ``simulate`` (the animal's pose over time), ``rig`` (the cameras), ``background``
(the floor each camera sees), ``render`` (the animal and its markers drawn over a
background), ``write`` (the project on disk: ``make_example_project``).
"""

from mvcore.example.render import marker_colors
from mvcore.example.simulate import KEYPOINT_NAMES
from mvcore.example.write import make_example_project

__all__ = ["KEYPOINT_NAMES", "make_example_project", "marker_colors"]
