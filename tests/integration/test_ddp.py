"""Two DDP processes on the CPU (gloo): both ranks step on different samples, end with the same
weights, and only rank 0 writes the checkpoint.

Lightning's ``strategy="ddp"`` re-launches the running script for rank 1, so the training runs
in a child process started from this file (``python test_ddp.py WORKDIR``), not inside pytest.
The Trainer is built here from the mvcore module and data module (``train()`` runs CPU jobs
with one process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STEPS = 3


def _train_ddp(workdir: Path) -> None:
    """Rank 0 and (re-launched by Lightning) rank 1: a few DDP steps on the example project."""
    import pytorch_lightning as pl
    import torch
    from lightning_fabric.plugins import TorchCheckpointIO
    from pytorch_lightning.callbacks import ModelCheckpoint

    from mvcore.config.load import load_config
    from mvcore.data.project import MultiviewProject
    from mvcore.plugin.components import load_components
    from mvcore.training.fit import prepare_training

    torch.set_num_threads(1)
    config = load_config(workdir / "proj" / "config.yaml", overrides=[
        "training.num_workers=0", "training.train_batch_size=8", "training.devices=2",
        "training.accelerator=cpu", "data.image_resize_dims.height=64",
        "data.image_resize_dims.width=64",
    ])
    components = load_components()
    project = MultiviewProject.from_config(config)
    module, data_module = prepare_training(config, components, project)  # batch 8 / 2 each

    class Record(pl.Callback):
        def __init__(self) -> None:
            self.batches: list[list[int]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batches.append([int(i) for i in batch["index"]])

        def on_train_end(self, trainer, pl_module):
            from mv_vit.masking import process_rank  # what seeds each rank's patch masks

            params = torch.cat([p.detach().flatten().double() for p in pl_module.parameters()])
            record = {"rank": trainer.global_rank, "mask_rank": process_rank(),
                      "world": trainer.world_size,
                      "global_step": trainer.global_step, "batches": self.batches,
                      "checksum": float(params.sum()), "norm": float(params.norm())}
            path = workdir / f"rank{trainer.global_rank}.json"
            path.write_text(json.dumps(record))

    class RecordingIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            with open(workdir / "saves.txt", "a") as handle:
                handle.write(f"{os.environ.get('LOCAL_RANK', '0')} {path}\n")
            super().save_checkpoint(checkpoint, path, storage_options)

    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=STEPS,
        limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, plugins=[RecordingIO()],
        callbacks=[Record(), ModelCheckpoint(dirpath=workdir / "checkpoints", filename="last",
                                             monitor=None, enable_version_counter=False)],
    )
    trainer.fit(module, datamodule=data_module)


@pytest.mark.slow
def test_two_cpu_processes_train_in_sync(tmp_path):
    from mvcore.example import make_example_project

    make_example_project(tmp_path / "proj", seed=0, num_frames=32, image_size=64,
                         label_every=1)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LOCAL_RANK", None)
    done = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True,
                          text=True, timeout=150, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert [r["mask_rank"] for r in ranks] == [0, 1]  # so each rank draws its own patch masks
    for record in ranks:
        assert record["global_step"] == STEPS and len(record["batches"]) == STEPS
        assert all(len(b) == 4 for b in record["batches"])  # batch 8 split over 2 processes
    for step in range(STEPS):  # the distributed sampler gives the ranks different rows
        assert not set(ranks[0]["batches"][step]) & set(ranks[1]["batches"][step])
    # gradients were all-reduced: identical weights on both ranks after the steps
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-6, abs=1e-6)
    assert ranks[0]["norm"] == pytest.approx(ranks[1]["norm"], rel=1e-6)
    saves = (tmp_path / "saves.txt").read_text().split("\n")
    saves = [line.split() for line in saves if line]
    assert saves and {rank for rank, _ in saves} == {"0"}  # rank 0 writes, rank 1 never
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    import torch

    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)
    assert state["global_step"] == STEPS


if __name__ == "__main__":
    _train_ddp(Path(sys.argv[1]))
