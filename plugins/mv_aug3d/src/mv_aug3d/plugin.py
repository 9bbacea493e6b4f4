"""Entry point of mv-aug3d: registers the 3D augmenter and the 2D per-view pipelines."""

from mvcore import hookimpl


@hookimpl
def mvcore_register_augmenters(registry):
    pass  # filled in by the augmenter implementations
