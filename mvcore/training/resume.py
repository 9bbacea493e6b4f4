"""``--resume MODEL_DIR``: check that the run can continue **before** anything in the directory
is touched.

Lightning finds out that a checkpoint does not fit only while it loads it, after mvcore has
rewritten ``config.yaml`` and ``context.json``; the crash then leaves a model directory whose
files describe another model. ``check_resume`` reads ``checkpoints/last.ckpt`` (a truncated or
foreign file is one line naming it), compares the views, keypoints, image size and backbone
with ``context.json`` / ``config.yaml`` (one line naming both values), and then every tensor
and optimiser group Lightning will load (one line naming the first that differ).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml

from mvcore.config.load import dump_config
from mvcore.errors import ConfigError, DataError
from mvcore.training.weights import describe_mismatch, unreadable_reason

__all__ = ["LAST", "check_resume", "read_checkpoint"]

#: the checkpoint a resumed run continues from, relative to the model directory
LAST = Path("checkpoints") / "last.ckpt"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint's dict (tensors on the CPU); DataError in one line when the file
    is truncated, damaged or not a checkpoint."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unreadable file gets the same message
        reason = unreadable_reason(exc)
        raise DataError(f"{path}: cannot be read as a checkpoint ({reason}); the file is "
                        "truncated or damaged - restore it from a copy, or train a new model "
                        "with --output") from None
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise DataError(f"{path}: not a Lightning checkpoint of mvcore (no state_dict); "
                        "--resume needs the model directory of an `mvcore train` run")
    return saved


def _differs(model_dir: Path, what: str, trained: Any, ours: Any) -> ConfigError:
    return ConfigError(
        f"--resume {model_dir}: the model was trained with {what} {trained} but this config "
        f"has {ours}; resume with the config it was trained with ({model_dir / 'config.yaml'})"
        ", or train a new model with --output")


def _check_context(model_dir: Path, context: Any) -> None:
    path = model_dir / "context.json"
    if not path.is_file():
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); is {model_dir} the model directory "
                        "of an `mvcore train` run?") from None
    checks = [("views", "view_names", list), ("keypoints", "keypoint_names", list),
              ("data.downsample_factor", "downsample_factor", int)]
    for what, key, kind in checks:
        if key in earlier and kind(earlier[key]) != kind(getattr(context, key)):
            raise _differs(model_dir, what, earlier[key], kind(getattr(context, key)))
    size = (earlier.get("image_height"), earlier.get("image_width"))
    if None not in size and tuple(size) != tuple(context.image_size):
        raise _differs(model_dir, "data.image_resize_dims (height x width)",
                       "x".join(map(str, size)), "x".join(map(str, context.image_size)))


def _check_backbone(model_dir: Path, config: Any) -> None:
    path = model_dir / "config.yaml"
    try:
        earlier = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return  # the tensors below still decide
    ours = dump_config(config).get("model", {})
    for key in ("model_type", "backbone"):
        if key in earlier and key in ours and earlier[key] != ours[key]:
            raise _differs(model_dir, f"model.{key}", earlier[key], ours[key])


def _optimizer_groups(module: Any) -> list[int]:
    """Tensors per optimiser group, as ``configure_optimizers`` builds them."""
    return [len(params) for params in module.backbone.param_groups().values() if params]


def check_resume(model_dir: Path, module: Any, config: Any) -> dict[str, Any]:
    """Raise ConfigError/DataError (one line) unless ``module`` (built from ``config``) can
    continue from ``model_dir``'s last checkpoint; reads only. Returns the checkpoint."""
    _check_context(model_dir, module.context)
    _check_backbone(model_dir, config)
    saved = read_checkpoint(model_dir / LAST)
    own = module.state_dict()
    problem = describe_mismatch(own, saved["state_dict"])
    if problem:
        raise ConfigError(f"--resume {model_dir}: {LAST} does not fit the network and losses "
                          f"of this config: {problem}; resume with the config it was trained "
                          f"with ({model_dir / 'config.yaml'})")
    groups = saved.get("optimizer_states") or []
    if groups:
        trained = [len(g.get("params", [])) for g in groups[0].get("param_groups", [])]
        if trained != _optimizer_groups(module):
            raise ConfigError(
                f"--resume {model_dir}: the optimiser of {LAST} has parameter groups of "
                f"{trained} tensors, this config builds {_optimizer_groups(module)}; resume "
                f"with the config it was trained with ({model_dir / 'config.yaml'})")
    return saved
