"""The multi-view transformer (MVT) backbone: one timm ViT attending across all camera views.

Every view is cut into 16x16 patches; the patch tokens of all views, each tagged with a learned
view embedding, form one sequence, so every block attends within and across views. The
features of each view then go through a heatmap head to one heatmap per keypoint. Patch
positions are an added position embedding (DINO, DINOv2, MAE, scratch) or, for DINOv3, 2D
rotary embeddings in every block, each view's tokens rotated by their own image positions.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from mv_vit.head import HeatmapHead, spatial_softmax
from mv_vit.masking import (
    PatchMaskParams,
    PatchMaskSchedule,
    mask_generator,
    mask_patches,
    process_rank,
)
from mv_vit.variants import VARIANTS, ViTVariant, get_variant
from mvcore import (
    Backbone,
    BackboneParams,
    ConfigError,
    Context,
    ParamError,
    read_weights_file,
    strip_common_prefix,
)

logger = logging.getLogger(__name__)


class MultiviewTransformerParams(BackboneParams):
    """Parameters of ``heatmap_multiview_transformer`` (``model.backbone_params``).

    The first five may also be given where Lightning Pose reads them (``model.backbone``,
    ``model.backbone_pretrained``, ``model.backbone_checkpoint``, ``model.head``,
    ``training.patch_mask``). Architecture overrides (``embed_dim``, ``depth``, ``num_heads``)
    are meant for from-scratch models; with hub pretrained weights they must match the variant.
    """

    lightning_pose_keys: ClassVar[dict[str, str]] = {
        "model.backbone": "backbone",
        "model.backbone_pretrained": "backbone_pretrained",
        "model.backbone_checkpoint": "backbone_checkpoint",
        "model.head": "head",
        "training.patch_mask": "patch_mask",
    }

    #: the ViT variant (``mv_vit.variants.VARIANTS``)
    backbone: str = "vits_dino"
    #: load the variant's pretrained weights from the hub (hub variants, no checkpoint given)
    backbone_pretrained: bool = True
    #: a local weights file (``.pth`` / ``.safetensors``) for the ViT; relative to the config
    backbone_checkpoint: str | None = None
    head: Literal["heatmap_cnn"] = "heatmap_cnn"
    #: the patch-masking curriculum
    patch_mask: PatchMaskParams = Field(default_factory=PatchMaskParams)
    embed_dim: int | None = Field(default=None, gt=0)
    depth: int | None = Field(default=None, gt=0)
    num_heads: int | None = Field(default=None, gt=0)
    drop_path_rate: float | None = Field(default=None, ge=0.0, lt=1.0)
    #: epsilon of every LayerNorm of the ViT; default: the timm model's own (1e-6 for the
    #: ViTs, 1e-5 for DINOv3). Hugging Face's DINO and MAE ViTs use 1e-12 (set by
    #: ``mvcore import-lightning-pose``)
    layer_norm_eps: float | None = Field(default=None, gt=0.0)
    #: width of the intermediate head deconvolutions (ds = 1); default: num_keypoints
    deconv_channels: int | None = Field(default=None, gt=0)
    #: recompute block activations in backward: less memory, ~30% slower steps
    grad_checkpointing: bool = False
    #: attention kernel: ``sdpa`` = torch's ``scaled_dot_product_attention`` (flash or
    #: memory-efficient kernels where the device has them), ``math`` = explicit
    #: ``softmax(Q K^T / sqrt(d)) V`` (the reference; more memory)
    attention: Literal["sdpa", "math"] = "sdpa"
    #: ``blocks``: ``torch.compile`` each transformer block (one graph shared by all blocks;
    #: compiled on the first step, needs a C++ compiler on CPU); ``off``: eager
    compile: Literal["off", "blocks"] = "off"
    #: autocast of the transformer blocks (attention and MLP matmuls): ``off`` (float32 unless
    #: ``training.precision`` autocasts), ``bf16``, ``fp16``, or ``auto``: bf16 on a CUDA GPU
    #: that supports it, off on CPU. Patch embedding, head and softmax stay float32; an autocast
    #: already active (``training.precision: *-mixed``) is left alone.
    autocast: Literal["off", "auto", "bf16", "fp16"] = "auto"
    #: NHWC memory layout for the patch embedding and the head's convolutions
    channels_last: bool = False

    @field_validator("backbone")
    @classmethod
    def _known_variant(cls, value: str) -> str:
        try:
            get_variant(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("model.backbone: ")) from None
        return value



def _check_params(params: MultiviewTransformerParams, context: Context) -> ViTVariant:
    """Every check against the project and between parameters; raises ParamError (or a
    ConfigError naming the data key when the project does not fit)."""
    variant = get_variant(params.backbone)
    height, width = context.image_size
    if height != width or height % variant.patch_size or height <= 0:
        raise ConfigError(
            f"data.image_resize_dims: the multi-view transformer needs a square model input "
            f"whose side is a multiple of {variant.patch_size} (the ViT patch size), got "
            f"height={height}, width={width}")
    if context.num_views < 2:
        raise ConfigError(f"data.view_names: the multi-view transformer needs >= 2 views, got "
                          f"{list(context.view_names)}")
    embed_dim = params.embed_dim or variant.embed_dim
    num_heads = params.num_heads or variant.num_heads
    if embed_dim % num_heads:
        raise ParamError("embed_dim", f"{embed_dim} is not divisible by num_heads {num_heads}")
    if embed_dim % 4:
        raise ParamError("embed_dim", f"must be divisible by 4 (the head's PixelShuffle), "
                                      f"got {embed_dim}")
    if variant.rope and (embed_dim // num_heads) % 4:
        raise ParamError("num_heads", (
            f"{variant.name}'s 2D rotary embedding needs embed_dim / num_heads divisible by 4, "
            f"got {embed_dim} / {num_heads}; choose another num_heads or embed_dim"))
    uses_hub = params.backbone_pretrained and not params.backbone_checkpoint
    if not variant.is_scratch and uses_hub:
        for key in ("embed_dim", "depth", "num_heads"):
            value = getattr(params, key)
            if value is not None and value != getattr(variant, key):
                raise ParamError(key, (
                    f"{value} differs from {variant.name}'s {getattr(variant, key)}, which its "
                    "pretrained weights fix; set model.backbone_pretrained: false or use a "
                    "*_scratch backbone"))
    if params.backbone_checkpoint:
        path, tried = context.resolve_path(params.backbone_checkpoint)
        if not path.is_file():
            raise ParamError("backbone_checkpoint", (
                f"file not found: {params.backbone_checkpoint} (tried "
                f"{', '.join(str(p) for p in tried)})"))
    return variant




def load_vit_checkpoint(vit: nn.Module, path: Path) -> dict[str, int]:
    """Load a local state dict into a timm ViT, non-strictly, and report what matched.

    Common prefixes are stripped, patch/position embeddings resampled by timm when their size
    differs (e.g. a DINOv2 patch-14 checkpoint), tensors of the wrong shape skipped. Missing,
    unexpected and skipped counts are logged, and warned about when non-zero. Returns them.
    DINOv3 (timm ``Eva``) models go through timm's Eva filter, which also reads Meta's original
    DINOv3 checkpoints.
    """
    from timm.models.eva import Eva
    from timm.models.eva import checkpoint_filter_fn as eva_filter
    from timm.models.vision_transformer import checkpoint_filter_fn as vit_filter

    checkpoint_filter_fn = eva_filter if isinstance(vit, Eva) else vit_filter
    model_state = vit.state_dict()
    state = strip_common_prefix(read_weights_file(path), set(model_state))
    try:
        state = checkpoint_filter_fn(state, vit)
    except Exception as exc:  # noqa: BLE001 - resampling is best effort; shapes are checked below
        logger.debug("timm checkpoint_filter_fn failed on %s: %s", path, exc)
    mismatched = [
        k for k, v in state.items() if k in model_state and v.shape != model_state[k].shape
    ]
    state = {k: v for k, v in state.items() if k not in mismatched}
    result = vit.load_state_dict(state, strict=False)
    report = {
        "loaded": len(state) - len(result.unexpected_keys),
        "missing": len(result.missing_keys),
        "unexpected": len(result.unexpected_keys),
        "shape_mismatch": len(mismatched),
    }
    if report["loaded"] == 0:
        raise ConfigError(
            f"model.backbone_checkpoint: no tensor of {path} matches the ViT of this backbone "
            f"(e.g. {', '.join(list(model_state)[:3])}); is it the right architecture?"
        )
    message = (
        f"model.backbone_checkpoint {path}: loaded {report['loaded']} tensors, "
        f"{report['missing']} missing, {report['unexpected']} unexpected, "
        f"{report['shape_mismatch']} skipped for shape"
    )
    logger.info(message)
    if report["missing"] or report["unexpected"] or report["shape_mismatch"]:
        details = [
            f"missing e.g. {result.missing_keys[:3]}" if result.missing_keys else "",
            f"unexpected e.g. {result.unexpected_keys[:3]}" if result.unexpected_keys else "",
            f"shape mismatch e.g. {mismatched[:3]}" if mismatched else "",
        ]
        warnings.warn(f"{message} ({'; '.join(d for d in details if d)})", stacklevel=2)
    return report


def build_vit(
    variant: ViTVariant,
    params: MultiviewTransformerParams,
    image_size: int,
    pretrained: bool,
    checkpoint: Path | None,
) -> nn.Module:
    """The timm ViT of ``variant`` for ``image_size`` inputs (other multiples of 16 work too).

    Hub weights are downloaded when ``pretrained`` (hub variants only) and no ``checkpoint`` is
    given; a ``checkpoint`` is loaded into a randomly initialised model. For RoPE variants
    (DINOv3) the attention blocks are told the sequence has no prefix tokens, so the rotary
    embedding is applied to every token of the MVT's prefix-free ``V * n`` sequence (timm's
    own ``forward_features``, which keeps the class and register tokens, is not used)."""
    import timm

    kwargs: dict[str, Any] = {
        "img_size": image_size,
        "patch_size": variant.patch_size,
        "dynamic_img_size": True,
        "num_classes": 0,
    }
    for key in ("embed_dim", "depth", "num_heads"):
        value = getattr(params, key)
        if value is not None or variant.is_scratch:
            kwargs[key] = value if value is not None else getattr(variant, key)
    if params.drop_path_rate is not None:
        kwargs["drop_path_rate"] = params.drop_path_rate
    if params.layer_norm_eps is not None:
        kwargs["norm_layer"] = functools.partial(nn.LayerNorm, eps=params.layer_norm_eps)
    if pretrained and not variant.is_scratch and checkpoint is None:
        try:
            vit = timm.create_model(variant.hub_name, pretrained=True, **kwargs)
        except Exception as exc:  # noqa: BLE001 - offline, hub or cache errors all end here
            raise ConfigError(
                f"model.backbone_pretrained: could not get the pretrained weights of "
                f"{variant.name!r} (timm {variant.hub_name!r}) from the Hugging Face hub: "
                f"{type(exc).__name__}: {exc}\n"
                "This machine may have no internet/hub access. Either download the weights "
                "elsewhere and set model.backbone_checkpoint: /path/to/weights.(pth|safetensors), "
                "or train from random weights with model.backbone_pretrained: false (or a "
                "*_scratch backbone)."
            ) from exc
    else:
        vit = timm.create_model(variant.timm_name, pretrained=False, **kwargs)
    if checkpoint is not None:
        load_vit_checkpoint(vit, checkpoint)
    if params.grad_checkpointing:
        vit.set_grad_checkpointing(True)
    uses_rope = getattr(vit, "rope", None) is not None
    for block in vit.blocks:
        block.attn.fused_attn = params.attention == "sdpa"
        if uses_rope:
            block.attn.num_prefix_tokens = 0  # class/register tokens are dropped in `embed`
        if params.compile == "blocks":
            block.compile(dynamic=False)  # in place: state-dict keys are unchanged
    return vit


def autocast_dtype(mode: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype of ``backbone_params.autocast`` on ``device_type`` (None = off).

    ``auto``: bf16 on a CUDA device that supports it, off on CPU (bf16 there depends on the
    CPU's instructions and changes the numbers; ``bf16`` asks for it) and whenever an autocast
    is already active (``training.precision`` decides then)."""
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if mode != "auto" or device_type != "cuda" or torch.is_autocast_enabled(device_type):
        return None
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


class MultiviewTransformer(Backbone):
    """Multi-view transformer: ``images (B, V, 3, H, W) -> heatmaps (B, V, K, h, w)``.

    ``h = H / 2**ds``; every heatmap is a spatial softmax. Images are ImageNet-normalised,
    square, with a side that is a multiple of 16.

    Variants (``backbone``, LP ``model.backbone``): see ``mv_vit.variants.VARIANTS``. Hub
    variants load timm's pretrained weights when ``backbone_pretrained`` (and no
    ``backbone_checkpoint``); ``*_scratch`` variants have no pretrained weights and ignore
    ``backbone_pretrained``. ``backbone_checkpoint`` loads a local state dict into any variant.

    Memory: attention is quadratic in the sequence length ``V * n`` with ``n = (H/16)**2``
    (2 views at 256x256 -> 512 tokens; 4 views at 384x384 -> 2304 tokens, ~20x the attention
    memory). ``backbone_params.grad_checkpointing`` trades compute for activation memory.

    Patch masking (``patch_mask``, LP ``training.patch_mask``) is applied inside ``forward``
    in training mode, at the ratio set by the last ``set_progress`` call, to every training
    batch.

    Speed options (``attention``, ``compile``, ``autocast``, ``channels_last``) change how
    the same function is computed, not the weights: a checkpoint loads under any of them.
    """

    name: ClassVar[str] = "heatmap_multiview_transformer"
    Params: ClassVar[type[BackboneParams]] = MultiviewTransformerParams
    params: MultiviewTransformerParams

    @classmethod
    def validate_context(cls, params: MultiviewTransformerParams, context: Context) -> None:
        _check_params(params, context)

    @classmethod
    def architecture_only(cls, params: MultiviewTransformerParams) -> MultiviewTransformerParams:
        """The same network without hub or local pretrained weights."""
        return params.model_copy(update={"backbone_pretrained": False,
                                         "backbone_checkpoint": None})

    def __init__(self, params: MultiviewTransformerParams, context: Context) -> None:
        super().__init__(params, context)
        variant = _check_params(params, context)
        self.variant = variant
        self.patch_size = variant.patch_size
        #: the patch grid of the project's images, ``(H/16, W/16)``; `encode`'s default grid
        self.grid = (context.image_height // self.patch_size,
                     context.image_width // self.patch_size)
        self.downsample_factor = int(context.downsample_factor)
        seed = int(context.seed)
        checkpoint = None
        if params.backbone_checkpoint:
            checkpoint, _ = context.resolve_path(params.backbone_checkpoint)
        # seeded, without disturbing the caller's RNG: the same config builds the same network
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.vit = build_vit(
                variant,
                params,
                context.image_height,
                bool(params.backbone_pretrained),
                checkpoint,
            )
            # class/register tokens are dropped after position embedding, so they never reach
            # the output; freezing them keeps DDP free of unused trainable parameters
            for token_name in ("cls_token", "reg_token"):
                token = getattr(self.vit, token_name, None)
                if isinstance(token, nn.Parameter):
                    token.requires_grad_(False)
            embed_dim = int(self.vit.embed_dim)
            self.head = HeatmapHead(
                embed_dim,
                self.num_keypoints,
                self.patch_size,
                self.downsample_factor,
                deconv_channels=params.deconv_channels,
            )
        self.channels_last = bool(params.channels_last)
        if self.channels_last:
            self.vit.patch_embed.to(memory_format=torch.channels_last)
            self.head.to(memory_format=torch.channels_last)
        generator = torch.Generator().manual_seed(seed)
        self.view_embeddings = nn.Parameter(
            torch.randn(self.num_views, embed_dim, generator=generator) * 0.02
        )
        self.mask_schedule = PatchMaskSchedule.from_config(params.patch_mask)
        self.mask_seed = seed
        #: current masking ratio (set by ``set_progress``; 0 until then)
        self.patch_mask_ratio = 0.0
        self._mask_step = -1
        self._mask_calls = 0

    # ------------------------------------------------------------------ forward pieces
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``images (B, V, 3, H, W) -> tokens (B, V, n, D)`` and the patch grid ``(H/16, W/16)``.

        Patch embedding and (resampled) position embedding of the timm ViT, prefix tokens
        (class, registers) dropped, plus the view embedding of each view. RoPE variants
        (DINOv3) have no added position embedding: `encode` rotates by position instead."""
        batch, views = images.shape[:2]
        flat = images.flatten(0, 1)
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        x = self.vit.patch_embed(flat)  # (B*V, gh, gw, D) with dynamic size
        if x.ndim == 4:
            grid = (int(x.shape[1]), int(x.shape[2]))
        else:
            grid = tuple(int(g) for g in self.vit.patch_embed.grid_size)
        x = self.vit._pos_embed(x)
        if isinstance(x, tuple):  # timm's Eva (DINOv3) also returns its rotary embedding
            x = x[0]
        x = x[:, self.vit.num_prefix_tokens :]  # (B*V, n, D)
        x = x.reshape(batch, views, grid[0] * grid[1], -1)
        return x + self.view_embeddings[None, :, None, :], grid

    def rotary_embedding(self, grid: tuple[int, int], seq_len: int) -> torch.Tensor | None:
        """RoPE sin/cos ``(S, 2 * head_dim)`` for ``S = V * n`` patch tokens, None without RoPE.

        The 2D positions of one ``grid`` (``n = gh * gw`` tokens, row-major as in `embed`) are
        repeated for every view: each view's tokens keep their own image positions, as in a
        single-image forward, and views differ only by their view embedding."""
        rope = getattr(self.vit, "rope", None)
        if rope is None:
            return None
        n = grid[0] * grid[1]
        if seq_len % n:
            raise ValueError(f"a sequence of {seq_len} tokens is not a whole number of "
                             f"{grid[0]}x{grid[1]} patch grids; pass encode's grid")
        return rope.get_embed(shape=list(grid)).repeat(seq_len // n, 1)  # (V*n, 2*head_dim)

    def encode(
        self,
        tokens: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        grid: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """ViT blocks + final norm on one token sequence ``(B, S, D) -> (B, S, D)``.

        ``attn_mask (S, S)`` bool (True = may attend) restricts attention, e.g. to block
        cross-view attention in ablations. The blocks run under ``backbone_params.autocast``;
        the output has the dtype of ``tokens``. ``grid``: the patch grid of each view, for the
        rotary embedding of RoPE variants (default: the project's, `grid`); ``S`` must be a
        whole number of such grids there."""
        x = self.vit.norm_pre(tokens)
        rope = self.rotary_embedding(grid or self.grid, x.shape[1])
        dtype = autocast_dtype(self.params.autocast, x.device.type)
        cast = (torch.autocast(x.device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
        with cast:
            if rope is not None:
                from timm.models import checkpoint

                checkpointing = self.vit.grad_checkpointing and torch.is_grad_enabled()
                for block in self.vit.blocks:  # over depth; Eva's blocks are a ModuleList
                    if checkpointing:
                        x = checkpoint(block, x, rope=rope, attn_mask=attn_mask)
                    else:
                        x = block(x, rope=rope, attn_mask=attn_mask)
            elif attn_mask is not None:
                for block in self.vit.blocks:
                    x = block(x, attn_mask=attn_mask)
            elif self.vit.grad_checkpointing and torch.is_grad_enabled():
                from timm.models import checkpoint_seq

                x = checkpoint_seq(self.vit.blocks, x)
            else:
                x = self.vit.blocks(x)
        return self.vit.norm(x.to(tokens.dtype))

    def decode(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``features (B, V, n, D) -> heatmaps (B, V, K, h, w)`` (spatial softmax)."""
        batch, views, _, dim = features.shape
        x = features.flatten(0, 1).transpose(1, 2).reshape(batch * views, dim, *grid)
        logits = self.head(x)  # (B*V, K, h, w)
        return spatial_softmax(logits).view(batch, views, *logits.shape[1:])

    def cross_view_block_mask(self, views: int, tokens_per_view: int, device: Any) -> torch.Tensor:
        """``(V*n, V*n)`` bool attention mask allowing attention only within each view."""
        view_of_token = torch.arange(views, device=device).repeat_interleave(tokens_per_view)
        return view_of_token[:, None] == view_of_token[None, :]

    def forward(
        self, images: torch.Tensor, block_cross_view_attention: bool = False
    ) -> torch.Tensor:
        """``images (B, V, 3, H, W) -> heatmaps (B, V, K, h, w)``.

        In training mode with a positive ``patch_mask_ratio`` random patches are zeroed first.
        ``block_cross_view_attention`` (diagnostics only) lets each view attend only to itself.
        """
        if images.ndim != 5 or images.shape[1] != self.num_views:
            raise ValueError(
                f"expected images (B, {self.num_views}, 3, H, W), got {tuple(images.shape)}"
            )
        if self.training and self.patch_mask_ratio > 0.0:
            generator = mask_generator(self.mask_seed, max(self._mask_step, 0), self._mask_calls,
                                       rank=process_rank())
            self._mask_calls += 1
            images, _ = mask_patches(images, self.patch_mask_ratio, self.patch_size, generator)
        tokens, grid = self.embed(images)  # (B, V, n, D)
        batch, views, n, dim = tokens.shape
        mask = None
        if block_cross_view_attention:
            mask = self.cross_view_block_mask(views, n, images.device)
        features = self.encode(tokens.reshape(batch, views * n, dim), attn_mask=mask, grid=grid)
        return self.decode(features.view(batch, views, n, dim), grid)

    # ------------------------------------------------------------------ trainer hooks
    @classmethod
    def from_lightning_pose(
        cls, params: MultiviewTransformerParams, state: dict[str, torch.Tensor],
        context: Context,
    ) -> tuple[MultiviewTransformerParams, dict[str, torch.Tensor]]:
        """A Lightning Pose multi-view transformer's tensors under this class's names
        (``mv_vit.lightning_pose``)."""
        # lazy: the conversion module is needed only by `mvcore import-lightning-pose`
        from mv_vit.lightning_pose import convert_lightning_pose

        return convert_lightning_pose(params, state, context)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``backbone`` (the ViT; frozen until unfreezing), ``head``, ``view_embeddings``."""
        return {
            "backbone": [p for p in self.vit.parameters() if p.requires_grad],
            "head": list(self.head.parameters()),
            "view_embeddings": [self.view_embeddings],
        }

    def set_progress(self, epoch: int, global_step: int, steps_per_epoch: int) -> dict[str, float]:
        """Set the patch-masking ratio for the coming batch; returns it for logging."""
        ratio = self.mask_schedule.ratio(global_step, steps_per_epoch, epoch)
        if global_step != self._mask_step:
            self._mask_step = global_step
            self._mask_calls = 0
        self.patch_mask_ratio = ratio
        return {"patch_mask_ratio": ratio}


__all__ = [
    "VARIANTS",
    "MultiviewTransformer",
    "MultiviewTransformerParams",
    "autocast_dtype",
    "load_vit_checkpoint",
]
