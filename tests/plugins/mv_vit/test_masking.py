"""Tests of patch masking: the curriculum, the masks, and masking inside the MVT."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from mv_vit.masking import (
    PatchMaskParams,
    PatchMaskSchedule,
    mask_generator,
    mask_patches,
    process_rank,
)
from mv_vit.model import MultiviewTransformer, MultiviewTransformerParams
from pydantic import ValidationError

from mvcore.build import make_context, select_backbone
from mvcore.config.load import parse_config
from mvcore.context import Context
from mvcore.errors import ConfigError
from mvcore.plugin.components import load_components

PATCH = 16


def schedule(**kwargs: Any) -> PatchMaskSchedule:
    return PatchMaskSchedule.from_config(PatchMaskParams(**kwargs))


def select_from_yaml(text: str) -> Any:
    """The backbone an LP-style config selects, checked against a project with its views."""
    config = parse_config(yaml.safe_load(text))
    project = SimpleNamespace(
        view_names=list(config.data.view_names), keypoint_names=["nose", "tail"],
        has_calibration=False,
    )
    context = make_context(config, project)
    return select_backbone(config, load_components(refresh=True), context)


def formula(step: int, init: int, final: int, r0: float, r1: float) -> float:
    """Lightning Pose's schedule, written out independently (init < final)."""
    if step < init:
        return 0.0
    return r0 + min((step - init) / (final - init), 1.0) * (r1 - r0)


# ---------------------------------------------------------------------- schedule
@pytest.mark.parametrize("epoch", [0, 10, 39, 40, 41, 100, 170, 299, 300, 301, 1000])
def test_schedule_matches_the_formula_over_epochs(epoch: int) -> None:
    steps_per_epoch = 7
    sched = schedule(init_epoch=40, final_epoch=300, init_ratio=0.1, final_ratio=0.5)
    step = epoch * steps_per_epoch
    expected = formula(step, 40 * 7, 300 * 7, 0.1, 0.5)
    assert sched.ratio(step, steps_per_epoch, epoch) == pytest.approx(expected)


def test_schedule_landmarks() -> None:
    sched = schedule(init_epoch=40, final_epoch=300, init_ratio=0.0, final_ratio=0.5)
    assert sched.ratio(399, 10) == 0.0  # before init
    assert sched.ratio(400, 10) == 0.0  # init, init_ratio 0
    assert sched.ratio(1700, 10) == pytest.approx(0.25)  # midway
    assert sched.ratio(3000, 10) == pytest.approx(0.5)  # final
    assert sched.ratio(10**6, 10) == pytest.approx(0.5)  # stays


def test_fractional_epochs_are_converted_with_ceil() -> None:
    sched = schedule(init_epoch=2.5, final_epoch=3.5, init_ratio=0.2, final_ratio=0.4)
    assert sched.steps(3) == (8, 11)  # ceil(7.5), ceil(10.5)
    assert sched.ratio(7, 3) == 0.0
    assert sched.ratio(8, 3) == pytest.approx(0.2)


def test_init_equal_to_final_jumps_to_final_ratio() -> None:
    sched = schedule(init_epoch=5, final_epoch=5, init_ratio=0.1, final_ratio=0.3)
    assert sched.ratio(49, 10) == 0.0
    assert sched.ratio(50, 10) == pytest.approx(0.3)
    steps = schedule(init_step=20, final_step=20, final_ratio=0.3)
    assert steps.ratio(19, 0) == 0.0 and steps.ratio(20, 0) == pytest.approx(0.3)


def test_step_keys_win_over_epochs() -> None:
    sched = schedule(init_epoch=1, final_epoch=2, init_step=100, final_step=200, final_ratio=0.4)
    assert sched.steps(1000) == (100, 200)
    assert sched.ratio(150, 1000) == pytest.approx(0.2)


def test_unknown_epoch_length_uses_epochs() -> None:
    sched = schedule(init_epoch=10, final_epoch=20, final_ratio=0.4)
    assert sched.ratio(0, 0, epoch=9) == 0.0
    assert sched.ratio(0, 0, epoch=15) == pytest.approx(0.2)


def test_final_ratio_zero_turns_masking_off() -> None:
    sched = schedule(init_epoch=0, final_epoch=1, init_ratio=0.3, final_ratio=0.0)
    assert not sched.enabled
    assert all(sched.ratio(step, 10) == 0.0 for step in (0, 5, 10, 100))


def test_bad_step_keys_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="together"):
        PatchMaskParams.model_validate({"init_step": 10})
    with pytest.raises(ValidationError, match="together"):
        PatchMaskParams.model_validate({"final_step": 10})
    with pytest.raises(ValidationError, match=r"final_step \(5\) must be >= init_step \(10\)"):
        PatchMaskParams.model_validate({"init_step": 10, "final_step": 5})
    with pytest.raises(ValidationError, match="init_step"):
        PatchMaskParams.model_validate({"init_step": -1, "final_step": 5})
    with pytest.raises(ValidationError, match="init_epoch"):
        PatchMaskParams.model_validate({"init_epoch": -1})
    PatchMaskParams.model_validate({"init_step": 10, "final_step": 10})  # a jump is fine


def test_bad_epochs_ratios_and_keys_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="final_epoch"):
        PatchMaskParams.model_validate({"init_epoch": 10, "final_epoch": 5})
    for ratio in (-0.1, 1.0):
        with pytest.raises(ValidationError, match="final_ratio"):
            PatchMaskParams.model_validate({"final_ratio": ratio})
        with pytest.raises(ValidationError, match="init_ratio"):
            PatchMaskParams.model_validate({"init_ratio": ratio})
    with pytest.raises(ValidationError, match="final_ration"):
        PatchMaskParams.model_validate({"final_ration": 0.5})


def test_bad_patch_mask_in_a_config_names_the_key() -> None:
    base = "data: {view_names: [a, b]}\nmodel: {backbone: vit_micro_scratch}\n"
    with pytest.raises(ConfigError, match=r"training\.patch_mask.*together"):
        select_from_yaml(base + "training: {patch_mask: {init_step: 10}}\n")
    with pytest.raises(ConfigError, match=r"training\.patch_mask.*final_step \(5\) must be"):
        select_from_yaml(base + "training: {patch_mask: {init_step: 10, final_step: 5}}\n")
    with pytest.raises(ConfigError, match=r"training\.patch_mask\.final_ratio"):
        select_from_yaml(base + "training: {patch_mask: {final_ratio: 1.5}}\n")


# ---------------------------------------------------------------------- masks
def _patch_grid(x: torch.Tensor) -> torch.Tensor:
    """``(B, V, C, H, W) -> (B, V, n_patches, C*16*16)`` in row-major patch order."""
    b, v, c, h, w = x.shape
    grid = x.view(b, v, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 1, 3, 5, 2, 4, 6)
    return grid.reshape(b, v, (h // PATCH) * (w // PATCH), -1)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.77])
def test_masks_are_grid_aligned_with_exact_fraction(ratio: float) -> None:
    x = torch.randn(3, 2, 3, 64, 96) + 5.0  # no pixel is 0 by chance
    masked, kept = mask_patches(x, ratio, PATCH, torch.Generator().manual_seed(0))
    n = (64 // PATCH) * (96 // PATCH)
    assert kept.shape == (3, 2, n) and kept.dtype == torch.bool
    assert ((~kept).sum(-1) == int(ratio * n)).all()  # per sample and per view
    patches, original = _patch_grid(masked), _patch_grid(x)
    assert (patches[~kept] == 0).all()  # whole 16x16 patches, all channels
    assert torch.equal(patches[kept], original[kept])  # everything else untouched


def test_masks_differ_across_samples_and_views() -> None:
    x = torch.randn(4, 3, 3, 64, 64)
    _, kept = mask_patches(x, 0.5, PATCH, torch.Generator().manual_seed(1))
    flat = kept.reshape(12, -1)
    assert len({tuple(row.tolist()) for row in flat}) == 12


def test_masks_depend_only_on_seed_and_step() -> None:
    x = torch.randn(2, 2, 3, 64, 64)
    _, a = mask_patches(x, 0.5, PATCH, mask_generator(0, 100))
    _, b = mask_patches(x.double() * 3, 0.5, PATCH, mask_generator(0, 100))
    _, c = mask_patches(x, 0.5, PATCH, mask_generator(0, 101))
    _, d = mask_patches(x, 0.5, PATCH, mask_generator(1, 100))
    _, e = mask_patches(x, 0.5, PATCH, mask_generator(0, 100, call=1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d) and not torch.equal(a, e)


def test_each_distributed_rank_gets_its_own_masks() -> None:
    x = torch.randn(2, 2, 3, 64, 64)
    _, single = mask_patches(x, 0.5, PATCH, mask_generator(0, 100))
    _, rank0 = mask_patches(x, 0.5, PATCH, mask_generator(0, 100, rank=0))
    _, rank1 = mask_patches(x, 0.5, PATCH, mask_generator(0, 100, rank=1))
    _, rank2 = mask_patches(x, 0.5, PATCH, mask_generator(0, 100, rank=2))
    assert torch.equal(single, rank0)  # rank 0 keeps the single-process masks
    assert not torch.equal(rank0, rank1) and not torch.equal(rank1, rank2)
    assert process_rank() == 0  # no process group in the test session


def test_zero_ratio_and_bad_sizes() -> None:
    x = torch.randn(1, 2, 3, 32, 32)
    masked, kept = mask_patches(x, 0.05, PATCH, torch.Generator())  # int(0.05 * 4) == 0
    assert masked is x and kept.all()
    with pytest.raises(ValueError, match="multiple of the patch size"):
        mask_patches(torch.randn(1, 2, 3, 40, 32), 0.5, PATCH, torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_masks_are_the_same_on_cpu_and_gpu() -> None:
    x = torch.randn(2, 2, 3, 64, 64)
    _, cpu = mask_patches(x, 0.4, PATCH, mask_generator(3, 7))
    _, gpu = mask_patches(x.cuda(), 0.4, PATCH, mask_generator(3, 7))
    assert gpu.is_cuda and torch.equal(cpu, gpu.cpu())


# ---------------------------------------------------------------------- inside the model
def make_model(final_ratio: float = 0.5, **patch_mask: Any) -> MultiviewTransformer:
    params = MultiviewTransformerParams(
        backbone="vit_micro_scratch",
        patch_mask=PatchMaskParams(
            **{"init_epoch": 1, "final_epoch": 3, "final_ratio": final_ratio} | patch_mask
        ),
    )
    context = Context(view_names=("a", "b"), keypoint_names=("nose", "tail"),
                      image_height=64, image_width=64)
    MultiviewTransformer.validate_context(params, context)
    return MultiviewTransformer(params, context)


def _vit_inputs(model: MultiviewTransformer, x: torch.Tensor) -> torch.Tensor:
    """The images that reach the ViT's patch embedding, ``(B, V, 3, H, W)``."""
    seen: list[torch.Tensor] = []
    handle = model.vit.patch_embed.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach().clone())
    )
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0].view_as(x)


def _masked_counts(inputs: torch.Tensor) -> torch.Tensor:
    return (_patch_grid(inputs) == 0).all(-1).sum(-1)  # (B, V)


def test_model_masks_in_training_at_the_scheduled_ratio() -> None:
    model = make_model().train()
    x = torch.randn(3, 2, 3, 64, 64) + 5.0
    assert model.set_progress(0, 5, 10) == {"patch_mask_ratio": 0.0}  # before init (step 10)
    assert _masked_counts(_vit_inputs(model, x)).sum() == 0
    logged = model.set_progress(2, 20, 10)  # midway: 0.25 of 16 patches -> 4
    assert logged == {"patch_mask_ratio": pytest.approx(0.25)}
    assert model.patch_mask_ratio == pytest.approx(0.25)
    assert (_masked_counts(_vit_inputs(model, x)) == 4).all()
    model.set_progress(5, 50, 10)  # after final: 0.5 -> 8
    assert (_masked_counts(_vit_inputs(model, x)) == 8).all()


def test_model_masks_are_reproducible_per_step_and_differ_between_passes() -> None:
    x = torch.randn(2, 2, 3, 64, 64) + 5.0
    runs = []
    for _ in range(2):
        model = make_model().train()
        model.set_progress(5, 50, 10)
        first, second = _vit_inputs(model, x), _vit_inputs(model, x)  # e.g. labelled, unlabelled
        model.set_progress(5, 51, 10)
        runs.append((first, second, _vit_inputs(model, x)))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][2], runs[1][2])
    assert not torch.equal(runs[0][0], runs[0][1])  # second pass of the same step
    assert not torch.equal(runs[0][0], runs[0][2])  # next step


def test_model_does_not_mask_in_eval_mode() -> None:
    model = make_model()
    model.set_progress(5, 50, 10)
    x = torch.randn(2, 2, 3, 64, 64) + 5.0
    assert torch.equal(_vit_inputs(model.eval(), x), x)


def test_model_with_final_ratio_zero_never_masks() -> None:
    model = make_model(final_ratio=0.0, init_ratio=0.3).train()
    assert model.set_progress(5, 50, 10) == {"patch_mask_ratio": 0.0}
    x = torch.randn(2, 2, 3, 64, 64) + 5.0
    assert torch.equal(_vit_inputs(model, x), x)


def test_seed_patch_mask_yaml_is_accepted_verbatim() -> None:
    text = """\
data:
    view_names: [top, bottom]
model:
    backbone: vits_dino
    model_type: heatmap_multiview_transformer
training:
    patch_mask:
        init_epoch: 40     # epoch to start patch masking
        final_epoch: 300   # epoch when patch masking reaches maximum
        init_ratio: 0.0    # initial masking ratio
        final_ratio: 0.5   # final masking ratio
"""
    selected = select_from_yaml(text)
    assert selected.cls is MultiviewTransformer
    assert selected.params.patch_mask == PatchMaskParams(
        init_epoch=40, final_epoch=300, init_ratio=0.0, final_ratio=0.5
    )
    sched = PatchMaskSchedule.from_config(selected.params.patch_mask)
    assert sched.enabled and sched.steps(4) == (160, 1200)
    assert sched.ratio(680, 4) == pytest.approx(0.25)
