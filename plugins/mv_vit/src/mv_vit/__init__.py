"""mv_vit: an mvcore plugin."""

__version__ = "0.1.0"
