"""Pixel-space patch masking for the multi-view transformer, and its curriculum.

Masking whole 16x16 patches of some views forces the network to fill them in from the other
views through cross-view attention. The ratio follows ``training.patch_mask``: none before
``init``, a linear ramp from ``init_ratio`` to ``final_ratio`` until ``final``, then constant.

Differences from Lightning Pose (see the behaviour reference, bug B5): masks come from a CPU
generator seeded with ``(seed, global_step, k, rank)`` so they are identical on CPU and GPU
and differ between the processes of a distributed run (each rank sees different images);
``init == final`` jumps to ``final_ratio`` instead of dividing by zero; and the model applies
the mask inside its own training forward pass, so unlabelled batches are masked too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator


class PatchMaskParams(BaseModel):
    """``training.patch_mask`` (Lightning Pose's place) or ``model.backbone_params.patch_mask``.

    Masking starts at ``init_epoch`` (or ``init_step``) with ``init_ratio`` of the patches and
    ramps linearly to ``final_ratio`` at ``final_epoch`` (``final_step``). ``final_ratio: 0``
    turns masking off (Lightning Pose: an absent section means off)."""

    model_config = ConfigDict(extra="forbid")

    init_epoch: float = Field(40, ge=0)
    final_epoch: float = Field(300, ge=0)
    init_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    final_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    #: step-based alternative (Lightning Pose accepts these directly); both or neither
    init_step: int | None = Field(None, ge=0)
    final_step: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> PatchMaskParams:
        if self.final_epoch < self.init_epoch:
            raise ValueError(f"final_epoch ({self.final_epoch:g}) must be >= init_epoch "
                             f"({self.init_epoch:g})")
        if (self.init_step is None) != (self.final_step is None):
            raise ValueError("init_step and final_step must be given together (or neither, "
                             "to use init_epoch/final_epoch)")
        if self.init_step is not None and self.final_step < self.init_step:
            raise ValueError(f"final_step ({self.final_step}) must be >= init_step "
                             f"({self.init_step})")
        return self


@dataclass(frozen=True)
class PatchMaskSchedule:
    """The masking curriculum of ``training.patch_mask``.

    Step keys (``init_step``/``final_step``) win over epoch keys; epochs are converted to steps
    with ``ceil(epoch * steps_per_epoch)``, as Lightning Pose does.
    """

    init_epoch: float = 40
    final_epoch: float = 300
    init_ratio: float = 0.0
    final_ratio: float = 0.0
    init_step: int | None = None
    final_step: int | None = None

    @classmethod
    def from_config(cls, patch_mask: Any) -> PatchMaskSchedule:
        """Build from ``PatchMaskParams`` (or any object with the same attributes)."""
        return cls(
            init_epoch=float(patch_mask.init_epoch),
            final_epoch=float(patch_mask.final_epoch),
            init_ratio=float(patch_mask.init_ratio),
            final_ratio=float(patch_mask.final_ratio),
            init_step=patch_mask.init_step,
            final_step=patch_mask.final_step,
        )

    @property
    def enabled(self) -> bool:
        """``final_ratio: 0.0`` turns masking off (Lightning Pose: ``use_patch_masking``)."""
        return self.final_ratio > 0.0

    def steps(self, steps_per_epoch: int) -> tuple[int, int]:
        """``(init_step, final_step)`` in optimiser steps."""
        if self.init_step is not None and self.final_step is not None:
            return self.init_step, self.final_step
        return (
            math.ceil(self.init_epoch * steps_per_epoch),
            math.ceil(self.final_epoch * steps_per_epoch),
        )

    def ratio(self, global_step: int, steps_per_epoch: int, epoch: float = 0.0) -> float:
        """The masking ratio at ``global_step`` (0 before init, linear ramp, then final).

        With no step keys and ``steps_per_epoch <= 0`` (unknown epoch length) the ramp runs on
        ``epoch`` instead of steps."""
        if not self.enabled:
            return 0.0
        if self.init_step is None and steps_per_epoch <= 0:
            now, start, end = float(epoch), self.init_epoch, self.final_epoch
        else:
            start_step, end_step = self.steps(steps_per_epoch)
            now, start, end = float(global_step), float(start_step), float(end_step)
        if now < start:
            return 0.0
        progress = 1.0 if end <= start else min((now - start) / (end - start), 1.0)
        return self.init_ratio + progress * (self.final_ratio - self.init_ratio)


def process_rank() -> int:
    """This process's rank in the default ``torch.distributed`` group (0 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return 0


def mask_generator(seed: int, global_step: int, call: int = 0, rank: int = 0) -> torch.Generator:
    """A CPU generator seeded from ``(seed, global_step, call, rank)``.

    ``call`` counts masked forward passes within one step (labelled and unlabelled batches,
    accumulated micro-batches), so they get different masks; ``rank`` (the distributed rank)
    gives each process of a multi-device run its own masks (rank 0 = a single-process run).
    The same arguments always give the same masks, on any device."""
    entropy = [seed % 2**63, global_step % 2**63, call % 2**63]
    if rank:
        entropy.append(rank)
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state) % 2**63)


def mask_patches(
    images: torch.Tensor, ratio: float, patch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero ``int(ratio * n_patches)`` random patches of every image, per sample and per view.

    ``images (B, V, C, H, W)`` are ImageNet-normalised, so 0 is the mean colour. Patches are
    ``patch_size`` squares aligned to the ViT patch grid, chosen independently for every sample
    and view from random scores ``(B, V, n_patches)`` drawn on ``generator`` (on the CPU, then
    moved to the image device: CPU and GPU runs get the same masks).

    Returns ``(masked_images (B, V, C, H, W), kept (B, V, n_patches) bool)`` with ``kept``
    False for masked patches, in row-major grid order.
    """
    batch, views, _, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image size {height}x{width} is not a multiple of the patch size {patch_size}"
        )
    grid_h, grid_w = height // patch_size, width // patch_size
    n_patches = grid_h * grid_w
    n_mask = int(ratio * n_patches)
    if n_mask <= 0:
        kept = torch.ones(batch, views, n_patches, dtype=torch.bool, device=images.device)
        return images, kept
    scores = torch.rand(batch, views, n_patches, generator=generator, device=generator.device)
    masked_idx = scores.argsort(dim=-1)[..., :n_mask]
    kept = torch.ones(batch, views, n_patches, dtype=torch.bool, device=scores.device)
    kept.scatter_(-1, masked_idx, False)
    kept = kept.to(images.device)
    kept_px = (
        kept.view(batch, views, 1, grid_h, 1, grid_w, 1)
        .expand(batch, views, 1, grid_h, patch_size, grid_w, patch_size)
        .reshape(batch, views, 1, height, width)
    )
    return images.masked_fill(~kept_px, 0.0), kept
