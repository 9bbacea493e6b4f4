"""Settings of the small model trained once for the integration tests
(``tests/integration/conftest.py``)."""

from __future__ import annotations

#: the settings of the shared model: small input, two epochs, a 3D loss and an unsupervised
#: loss on the example's unlabelled video
TRAINING = [
    "data.image_resize_dims.height=64", "data.image_resize_dims.width=64",
    "training.max_epochs=2", "training.min_epochs=1", "training.num_workers=0",
    "training.check_val_every_n_epoch=1", "training.train_batch_size=8",
    "model.losses_to_use=[pca_multiview]",
    "losses.supervised_pairwise_projections.log_weight=0.5",
    "eval.num_labeled_frame_plots=1",
]
#: frames of the example's video (every second one is labelled)
FRAMES = 40


def overrides(*extra: str) -> list[str]:
    """``--set`` arguments for ``mvcore train``: the shared settings, then ``extra``."""
    return [arg for item in (*TRAINING, *extra) for arg in ("--set", item)]
