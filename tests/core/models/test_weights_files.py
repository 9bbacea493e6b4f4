"""mvcore.models.weights_files: what every backbone plugin reads a local weights file with."""

from __future__ import annotations

import pytest
import torch

from mvcore import ConfigError, read_weights_file, strip_common_prefix


def test_a_wrapped_checkpoint_gives_its_tensors_and_the_prefix_that_fits_goes(tmp_path):
    path = tmp_path / "w.ckpt"
    weights = {"backbone.encoder.a.weight": torch.ones(2), "backbone.encoder.b": torch.zeros(1)}
    torch.save({"epoch": 3, "state_dict": {**weights, "step": 7}}, path)
    state = read_weights_file(path)
    assert sorted(state) == sorted(weights)  # unwrapped, non-tensors left out
    stripped = strip_common_prefix(state, {"a.weight", "b", "c"})
    assert sorted(stripped) == ["a.weight", "b"]
    assert torch.equal(stripped["a.weight"], torch.ones(2))
    assert strip_common_prefix(state, {"x"}) is state  # nothing fits: as read


def test_files_that_are_not_weights_are_one_line(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError) as info:
        read_weights_file(bad, "model.backbone_checkpoint")
    assert str(info.value).startswith(f"model.backbone_checkpoint: cannot read {bad} as a "
                                      "weights-only torch file (")
    assert "\n" not in str(info.value)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.ones(3), tensor)
    with pytest.raises(ConfigError, match="holds a Tensor, not a state dict"):
        read_weights_file(tensor)
