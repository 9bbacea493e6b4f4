"""Network weights of a trained mvcore model: read from a checkpoint, loaded into a module.

Used to start a run from an earlier model (``model.checkpoint``) and to rebuild a trained model
for prediction (``mvcore.predict.model_io``). Loss buffers (PCA bases...) in a checkpoint are
not network weights and are skipped. Whatever does not fit is an error that names both sides.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from mvcore.errors import ConfigError, MvcoreError

__all__ = ["checkpoint_of", "describe_mismatch", "load_network_weights",
           "read_network_weights", "start_from_checkpoint", "unreadable_reason"]

_LOSS_PREFIXES = ("loss_supervised.", "loss_unsupervised.")
_SHOWN = 3


def unreadable_reason(exc: BaseException) -> str:
    """Why ``torch.load`` failed, short enough for a one-line message: the first sentence of
    the error's first line (torch appends paragraphs of advice), at most 120 characters."""
    line = (str(exc).strip().splitlines() or [""])[0]
    sentence = line.split(". ")[0].rstrip(".") or type(exc).__name__
    return sentence if len(sentence) <= 120 else sentence[:117] + "..."


def read_network_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The network tensors of a Lightning checkpoint (or a bare state dict) on the CPU."""
    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        reason = unreadable_reason(exc)
        raise MvcoreError(f"{ckpt}: cannot be read as a checkpoint ({reason}); the file is "
                          "truncated, damaged or not a checkpoint") from None
    state = saved.get("state_dict", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise MvcoreError(f"{ckpt}: no state_dict in the checkpoint")
    return {k: v for k, v in state.items() if not k.startswith(_LOSS_PREFIXES)}


def load_network_weights(module: torch.nn.Module, state: dict[str, torch.Tensor],
                         source: str, target: str) -> None:
    """Load every network weight of ``module`` from ``state``; a missing, unexpected or
    differently shaped tensor is an MvcoreError naming ``source`` and ``target``."""
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(_LOSS_PREFIXES)}
    details = describe_mismatch(own, state)
    if details:
        raise MvcoreError(f"{source} does not fit the network of {target}: {details}")
    module.load_state_dict(state, strict=False)


def describe_mismatch(own: dict[str, torch.Tensor], state: dict[str, Any]) -> str:
    """What keeps ``state`` from loading into tensors ``own`` (the first few differently
    shaped, missing and unexpected names, one line), or "" when every tensor fits."""
    shapes = [f"{k} is {tuple(state[k].shape)} there but {tuple(v.shape)} here"
              for k, v in own.items()
              if k in state and hasattr(state[k], "shape") and state[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    return "; ".join(part for part in (
        ", ".join(shapes[:_SHOWN]),
        f"missing {missing[:_SHOWN]}" if missing else "",
        f"unexpected {unexpected[:_SHOWN]}" if unexpected else "") if part)


def checkpoint_of(path: Path) -> tuple[Path, Path | None]:
    """``(checkpoint file, its model directory or None)`` for a model directory (its
    ``best.ckpt``, else ``last.ckpt``) or a ``.ckpt`` file."""
    if path.is_dir():
        for name in ("best", "last"):
            if (path / "checkpoints" / f"{name}.ckpt").is_file():
                return path / "checkpoints" / f"{name}.ckpt", path
        raise ConfigError(f"model.checkpoint: {path} holds no checkpoints/best.ckpt or "
                          "last.ckpt; is it a directory written by `mvcore train`?")
    if not path.is_file():
        raise ConfigError(f"model.checkpoint: {path} not found (give a model directory of "
                          "`mvcore train` or a .ckpt file)")
    model_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    return path, model_dir


def start_from_checkpoint(module: Any, config: Any) -> Path:
    """Load the weights of ``model.checkpoint`` (relative paths: the config's folder) into
    ``module``; the earlier model must have the same views and keypoints. Returns the file."""
    given = Path(config.model.checkpoint).expanduser()
    if not given.is_absolute() and config.config_dir:
        given = Path(config.config_dir) / given
    ckpt, model_dir = checkpoint_of(given)
    context_file = model_dir / "context.json" if model_dir is not None else None
    if context_file is not None and context_file.is_file():
        earlier = json.loads(context_file.read_text())
        ours = module.context
        for key, label in (("view_names", "views"), ("keypoint_names", "keypoints")):
            if list(earlier.get(key, [])) != list(getattr(ours, key)):
                raise ConfigError(
                    f"model.checkpoint: {model_dir} was trained on {label} {earlier.get(key)} "
                    f"but this project has {list(getattr(ours, key))}; start from a model of "
                    "the same views and keypoints, or remove model.checkpoint")
        grid = earlier.get("heatmap_grid", "centred")
        if grid != ours.heatmap_grid:
            warnings.warn(
                f"model.checkpoint: {model_dir} reads its heatmaps with model.heatmap_grid "
                f"{grid!r}, this config with {ours.heatmap_grid!r}: its keypoints start "
                f"shifted until training moves them; set model.heatmap_grid: {grid} to keep "
                "them", stacklevel=2)
    try:
        load_network_weights(module, read_network_weights(ckpt), str(ckpt), "this config")
    except MvcoreError as exc:
        raise ConfigError(f"model.checkpoint: {exc}") from None
    return ckpt
