"""Load a trained model directory (written by ``mvcore train``) for inference.

A model directory holds ``config.yaml`` (resolved, absolute ``data.data_dir``),
``context.json`` (the ``mvcore.Context`` the network was built with) and
``checkpoints/{best,last}.ckpt`` (Lightning). The network is rebuilt from the config and the
installed backbone plugin, without loss functions (no PCA fitting, no project needed), and the
checkpoint weights are loaded; loss buffers in the checkpoint are ignored.

``best`` (the default) is ``best.ckpt``, and ``last.ckpt`` with a one-line warning when there
is no ``best.ckpt``: validation never measured an error (a run shorter than
``training.check_val_every_n_epoch``), the same weights ``mvcore train`` reported from.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from mvcore.build import build_backbone, select_backbone
from mvcore.config.load import load_yaml, parse_config
from mvcore.context import Context
from mvcore.errors import MvcoreError
from mvcore.plugin.components import load_components
from mvcore.training.module import MultiviewPoseModule
from mvcore.training.weights import load_network_weights, read_network_weights

__all__ = ["load_model", "load_model_config", "resolve_checkpoint"]

def _require_dir(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    if not path.is_dir():
        raise MvcoreError(f"model directory not found: {path}")
    return path


def resolve_checkpoint(model_dir: str | Path, checkpoint: str = "best") -> Path:
    """``best`` / ``last`` -> ``checkpoints/<name>.ckpt``; any other value is a file path.
    ``best`` without a ``best.ckpt`` is ``last.ckpt``, with a warning that says so and why."""
    path = _require_dir(model_dir)
    if checkpoint in ("best", "last"):
        ckpt = path / "checkpoints" / f"{checkpoint}.ckpt"
        last = path / "checkpoints" / "last.ckpt"
        if checkpoint == "best" and not ckpt.is_file() and last.is_file():
            warnings.warn(f"{path} has no checkpoints/best.ckpt (validation never measured an "
                          "error in its run: it runs every training.check_val_every_n_epoch "
                          f"epochs); using {last}, the last epoch's weights", stacklevel=2)
            return last
    else:
        ckpt = Path(checkpoint)
    if not ckpt.is_file():
        found = sorted(p.name for p in (path / "checkpoints").glob("*.ckpt"))
        raise MvcoreError(
            f"{path}: checkpoint {ckpt} not found (checkpoints/ holds {found or 'nothing'}); "
            "is this a directory written by `mvcore train`?"
        )
    return ckpt


def load_model_config(model_dir: str | Path) -> Any:
    """The resolved ``MvConfig`` of a model directory (``config_dir`` = the model dir)."""

    path = _require_dir(model_dir)
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise MvcoreError(
            f"{path}: no config.yaml; is this a directory written by `mvcore train`?")
    config = parse_config(load_yaml(config_file), source=str(config_file))
    config.config_dir = str(path.resolve())
    return config


def _load_context(model_dir: Path) -> Any:

    context_file = model_dir / "context.json"
    if not context_file.is_file():
        raise MvcoreError(
            f"{model_dir}: no context.json (view and keypoint names, model input size); "
            "retrain with this mvcore version or write it by hand"
        )
    try:
        return Context.from_json(json.loads(context_file.read_text()))
    except (json.JSONDecodeError, TypeError, MvcoreError) as exc:
        raise MvcoreError(f"{context_file}: not a valid model context: {exc}") from exc


def load_model(
    model_dir: str | Path, checkpoint: str = "best", device: Any = None
) -> tuple[Any, Any]:
    """Rebuild the trained network of ``model_dir`` -> ``(module, config)``, in eval mode.

    ``checkpoint``: ``"best"``, ``"last"`` or a ``.ckpt`` path. ``device``: default CUDA when
    available, else CPU. The module holds the backbone alone (no losses), built from
    ``Backbone.architecture_only`` params (no pretrained or local backbone weights); every
    network weight must be in the checkpoint (a missing or unexpected non-loss key is an error:
    the checkpoint belongs to another architecture).
    """


    path = _require_dir(model_dir)
    config = load_model_config(path)
    context = _load_context(path)
    ckpt = resolve_checkpoint(path, checkpoint)
    components = load_components()
    # every weight comes from the checkpoint: never fetch pretrained weights (offline use) or
    # read the training-time backbone checkpoint (its relative path may not resolve here)
    # (no project checks: the training-time weights file need not exist here)
    backbone = build_backbone(select_backbone(config, components), context,
                              architecture_only=True)
    module = MultiviewPoseModule(config, backbone, context)
    load_network_weights(module, read_network_weights(ckpt), str(ckpt),
                         str(path / "config.yaml"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    module.to(device)
    module.eval()
    return module, config
