"""The Augmenter API (implementations live in plugins such as mv-aug3d)."""

from mvcore.augment.base import Augmenter, AugmenterParams, Sample

__all__ = ["Augmenter", "AugmenterParams", "Sample"]
