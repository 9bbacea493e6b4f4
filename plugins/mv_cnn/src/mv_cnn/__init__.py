"""mv_cnn: an mvcore plugin (Lightning Pose's per-view CNN model, ``model_type: heatmap``)."""

__version__ = "0.1.0"
