"""Heatmap head: ViT patch features -> per-keypoint heatmaps (Lightning Pose's HeatmapHead).

``PixelShuffle(2)`` (D -> D/4 channels, 2x resolution), then ``log2(patch) - ds - 1``
``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`` layers doubling the resolution each. With
patch 16 and ``ds = 3`` there are no deconvolutions; Lightning Pose then outputs D/4 channels
instead of K (its bug B2), here a 1x1 convolution maps D/4 -> K.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class HeatmapHead(nn.Module):
    """``features (N, D, h/f, w/f) -> heatmap logits (N, K, h, w)`` with ``f = patch / 2**ds``.

    ``deconv_channels`` is the width of the intermediate deconvolutions (default K, as in
    Lightning Pose's ``deconv_out_channels``). Softmax is left to the caller.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        patch_size: int,
        downsample_factor: int,
        deconv_channels: int | None = None,
        init_gain: float = 0.01,
    ) -> None:
        super().__init__()
        if in_channels % 4:
            raise ValueError(
                f"in_channels must be divisible by 4 for PixelShuffle(2), got {in_channels}"
            )
        n_deconv = int(round(math.log2(patch_size))) - downsample_factor - 1
        if n_deconv < 0:
            raise ValueError(
                f"downsample factor {downsample_factor} is too large for patch size {patch_size}"
            )
        self.n_deconv = n_deconv
        mid = deconv_channels or num_keypoints
        layers: list[nn.Module] = [nn.PixelShuffle(2)]
        channels = in_channels // 4
        if n_deconv == 0:
            layers.append(nn.Conv2d(channels, num_keypoints, kernel_size=1))
        for i in range(n_deconv):
            out = num_keypoints if i == n_deconv - 1 else mid
            layers.append(
                nn.ConvTranspose2d(
                    channels, out, kernel_size=3, stride=2, padding=1, output_padding=1
                )
            )
            channels = out
        self.layers = nn.Sequential(*layers)
        for module in self.layers:
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(module.weight, gain=init_gain)
                nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last two (spatial) dims: ``(..., h, w)``, each map sums to 1.

    Computed in float32 (also under mixed precision): heatmaps feed soft-argmax."""
    shape = logits.shape
    return logits.float().flatten(-2).softmax(dim=-1).view(shape)
