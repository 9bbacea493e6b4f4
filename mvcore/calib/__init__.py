"""Checking a camera calibration against a project's labels (``mvcore calib check``):

- ``check``: the numbers (per camera, per camera pair, outlier labels) and the findings that
  make the command exit 1, and the text and JSON reports;
- ``plots``: the rig (camera centres, viewing directions, triangulated labels) and the labels
  reprojected on a frame of every view, as PNGs.

Rules and columns are described in ``docs/calibration.md``.
"""
