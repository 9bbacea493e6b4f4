"""Leaving out wild terms: shared by the losses whose per-element value can explode."""

from __future__ import annotations

import torch

from mvcore import LogList


def drop_outliers(
    values: torch.Tensor, valid: torch.Tensor, limit: float | None, log_name: str
) -> tuple[torch.Tensor, LogList]:
    """Mask ``valid`` (same shape as ``values``) where ``values`` exceeds ``limit``.

    Rays that meet behind a camera or far away give terms so large that their gradient would
    swamp every other loss; such elements are dropped, and the fraction of previously valid
    elements dropped is logged under ``log_name``. ``limit=None`` keeps everything (no log).
    """
    if limit is None:
        return valid, []
    inlier = values.detach() <= limit
    dropped = (valid & ~inlier).sum() / valid.sum().clamp(min=1)
    return valid & inlier, [{"name": log_name, "value": dropped.detach()}]
