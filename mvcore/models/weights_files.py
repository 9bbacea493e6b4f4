"""Local weights files for backbones: read a state dict from a ``.safetensors`` or a
weights-only torch file, and match its keys to a network's.

Backbone plugins load pretrained weights from a file the user names
(``model.backbone_checkpoint``), never from the network at run time; these two helpers are
what every such plugin needs, so that each reads files and words its errors the same way.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch

from mvcore.errors import ConfigError

__all__ = ["WRAPPER_KEYS", "read_weights_file", "strip_common_prefix"]

#: keys under which training frameworks nest the tensors (Lightning, DINO's ``teacher``, ...)
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "teacher")


def read_weights_file(path: Path, key: str = "model.backbone_checkpoint"
                      ) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or weights-only torch file, unwrapped from
    ``WRAPPER_KEYS`` (up to three levels); ``key`` names the config key in the one-line
    ``ConfigError`` for a file that cannot be read or holds no state dict."""
    if path.suffix == ".safetensors":
        try:
            # lazy: safetensors is needed only for .safetensors files
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(f"{key}: reading {path} needs the safetensors package (pip install "
                              "safetensors), or save the weights with torch.save") from None
        try:
            obj: Any = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any read failure is a bad file
            raise ConfigError(f"{key}: cannot read {path}: {exc}") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any read failure is a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"{key}: cannot read {path} as a weights-only torch file ({first}); if you "
                "trust it, save its tensors with torch.save(torch.load(path, "
                "weights_only=False)['state_dict'], 'weights.pth') and use that") from None
    for _ in range(3):
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise ConfigError(f"{key}: {path} holds a {type(obj).__name__}, not a state dict")
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def strip_common_prefix(state: dict[str, torch.Tensor], model_keys: set[str]
                        ) -> dict[str, torch.Tensor]:
    """Keep the keys under the prefix (``backbone.``, ``encoder.``, ``module.``, ...) that
    matches most of ``model_keys``, without it (no prefix when none matches)."""
    counts: Counter[str] = Counter()
    for name in state:
        parts = name.split(".")
        for i in range(len(parts)):
            prefix = ".".join(parts[:i]) + "." if i else ""
            if name[len(prefix):] in model_keys:
                counts[prefix] += 1
    if not counts:
        return state
    best = max(counts, key=lambda p: (counts[p], -len(p)))
    return {k[len(best):]: v for k, v in state.items() if k.startswith(best)}
