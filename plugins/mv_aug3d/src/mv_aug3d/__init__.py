"""mv_aug3d: an mvcore plugin."""

__version__ = "0.1.0"
