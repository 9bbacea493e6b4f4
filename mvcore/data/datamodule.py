"""Lightning data module: train / validation / test splits of a project and their loaders.

Split rule (Lightning Pose): ``train = floor(train_prob * n)``, ``val = floor(val_prob * n)``
(``val_prob`` None: the rest is split evenly between validation and test), the leftover goes
to test unless it is < 5 rows (then to train), and at least one validation row (a project
needs >= 2 rows). The rows are permuted with ``torch.randperm`` on
``torch.Generator().manual_seed(training.rng_seed_data_pt)`` (what ``random_split`` does) and
cut in that order. ``training.train_frames`` (> 1: a count, <= 1: a fraction) keeps the
first rows of the train split; the rest become "unused".

Unlabelled video: when the run asks for it (``use_unlabeled``: unsupervised losses are active)
and ``data.video_dir`` holds videos, ``train_dataloader()`` returns
``{"labeled": loader, "unlabeled": clip loader}`` (``mvcore.data.unlabeled``, one clip per
batch); Lightning combines the dict (``CombinedLoader``, mode ``max_size_cycle``). Otherwise
it returns the labelled loader alone and the unsupervised losses see the labelled batch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mvcore.data.dataset import MultiviewDataset, collate_items
from mvcore.data.project import MultiviewProject
from mvcore.data.sessions import VIDEO_SUFFIXES, video_dir
from mvcore.data.unlabeled import UnlabeledClipDataset
from mvcore.errors import DataError

__all__ = ["EpochItems", "EpochSeededSampler", "MultiviewDataModule", "split_sizes"]


def split_sizes(n: int, train_prob: float, val_prob: float | None = None) -> tuple[int, int, int]:
    """``(train, val, test)`` row counts for ``n`` rows (Lightning Pose's rule, see module doc)."""
    if n < 2:
        raise DataError(
            f"the project has {n} labelled row(s); at least 2 are needed (one train, one "
            "validation)"
        )
    if val_prob is None:
        val_prob = round((1.0 - train_prob) / 2.0, 5)
    # plain floor, no epsilon: the same sizes (and so, with the same seed, the same rows) as
    # Lightning Pose
    n_train = int(math.floor(train_prob * n))
    n_val = int(math.floor(val_prob * n))
    leftover = n - n_train - n_val
    if leftover < 5:
        n_train += leftover
        n_test = 0
    else:
        n_test = leftover
    if n_val == 0:
        n_train -= 1
        n_val = 1
    if n_train < 1:
        raise DataError(
            f"training.train_prob={train_prob} leaves no training rows out of {n}; raise it"
        )
    return n_train, n_val, n_test


def _num_train_frames(n_train: int, train_frames: float | None) -> int:
    """Rows kept from the train split (Lightning Pose ``compute_num_train_frames``)."""
    if train_frames is None or train_frames == 1:
        return n_train
    if train_frames <= 0:
        raise DataError(f"training.train_frames must be > 0, got {train_frames}")
    if train_frames > 1:
        if train_frames >= n_train:
            if train_frames > n_train:
                warnings.warn(
                    f"training.train_frames={train_frames:g} exceeds the {n_train} train rows; "
                    "using all of them",
                    stacklevel=3,
                )
            return n_train
        return int(train_frames)
    return max(1, int(train_frames * n_train))


class EpochSeededSampler(Sampler[tuple[int, int, int]]):
    """Random order drawn from ``(seed, epoch)``, so epoch e has the same order in a resumed
    run as in an uninterrupted one: Lightning calls ``set_epoch`` before every epoch (also
    through its DDP wrapper). Without ``set_epoch`` each pass moves on to the next epoch's
    order.

    Yields ``(epoch, position, index)`` keys, which ``EpochItems`` turns into
    ``dataset[index]`` drawn with the randomness of that epoch and position."""

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples, self.seed, self.epoch = int(num_samples), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int) -> list[int]:
        """The dataset indices of ``epoch`` in the order they are served."""
        generator = torch.Generator().manual_seed(self.seed + 1_000_003 * int(epoch))
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return iter([(epoch, position, index)
                     for position, index in enumerate(self.order(epoch))])

    def __len__(self) -> int:
        return self.num_samples


class EpochItems(Dataset):
    """A shuffled dataset as the training loaders serve it: item ``(epoch, position, index)``
    is ``dataset[index]`` with the dataset's draw counter set to ``epoch * len + position``
    first, so its random draws (augmentations, unlabelled clip choice) depend on the epoch and
    the place in it - not on how many items this copy of the dataset served before. A resumed
    run, whose dataset starts counting again at 0, thus draws what the uninterrupted run drew
    (which counted ``epoch * len + position`` items by then), in DataLoader workers too.

    Plain integer keys are passed through. Relies on the datasets' ``_draws`` counter
    (``MultiviewDataset``, ``UnlabeledClipDataset``); tests/core/data/test_data_order.py pins
    the behaviour."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int, int]) -> Any:
        if isinstance(key, tuple):
            epoch, position, index = key
            self.dataset._draws = int(epoch) * len(self.dataset) + int(position)
            key = index
        return self.dataset[key]


class MultiviewDataModule(pl.LightningDataModule):
    """Builds the project (unless given), the splits, and the data loaders.

    ``train_indices`` / ``val_indices`` / ``test_indices`` are ``(m,)`` int64 project rows in
    split (permutation) order. Batch sizes are the config's divided by the devices per node
    (``training.devices``, else ``num_gpus`` on a GPU, 1 on the CPU; rounded up), as Lightning
    Pose divides by ``num_gpus``. ``use_unlabeled``: serve unlabelled clips beside the
    labelled batches (the training run sets it when it builds unsupervised losses). Batches
    are collated by ``collate_items`` (``mvcore.contracts.LabeledBatch`` / ``ClipBatch``).
    """

    def __init__(
        self,
        config: Any,
        project: MultiviewProject | None = None,
        augmenters: Sequence = (),
        use_unlabeled: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.project = project
        self.augmenters = list(augmenters)
        self.use_unlabeled = use_unlabeled
        self._unlabeled: UnlabeledClipDataset | None = None
        self.train_indices = np.zeros(0, dtype=np.int64)
        self.val_indices = np.zeros(0, dtype=np.int64)
        self.test_indices = np.zeros(0, dtype=np.int64)
        self.unused_indices = np.zeros(0, dtype=np.int64)
        self._datasets: dict[str, MultiviewDataset] = {}
        self._is_setup = False
        training = config.training
        wanted = training.accelerator
        on_gpu = wanted in ("gpu", "cuda") or (wanted == "auto" and torch.cuda.is_available())
        devices = training.devices_per_node(on_gpu)
        self.train_batch_size = math.ceil(training.train_batch_size / devices)
        self.val_batch_size = math.ceil(training.val_batch_size / devices)
        self.test_batch_size = math.ceil(training.test_batch_size / devices)
        self.num_workers = int(training.num_workers or 0)

    def setup(self, stage: str | None = None) -> None:
        """Load the project and split it (once; later calls do nothing)."""
        if self._is_setup:
            return
        if self.project is None:
            self.project = MultiviewProject.from_config(self.config)
        training = self.config.training
        n = len(self.project)
        n_train, n_val, _ = split_sizes(n, training.train_prob, training.val_prob)
        generator = torch.Generator().manual_seed(int(training.rng_seed_data_pt))
        perm = torch.randperm(n, generator=generator).numpy().astype(np.int64)
        train = perm[:n_train]
        keep = _num_train_frames(n_train, training.train_frames)
        self.train_indices = train[:keep]
        self.unused_indices = train[keep:]
        self.val_indices = perm[n_train : n_train + n_val]
        self.test_indices = perm[n_train + n_val :]
        seed = int(training.rng_seed_data_pt)
        self._datasets = {
            "train": MultiviewDataset(
                self.project, self.config, self.train_indices, self.augmenters, True, seed
            ),
            "val": MultiviewDataset(self.project, self.config, self.val_indices, (), False, seed),
            "test": MultiviewDataset(
                self.project, self.config, self.test_indices, (), False, seed
            ),
        }
        self._is_setup = True

    @property
    def train_dataset(self) -> MultiviewDataset:
        self.setup()
        return self._datasets["train"]

    @property
    def val_dataset(self) -> MultiviewDataset:
        self.setup()
        return self._datasets["val"]

    @property
    def test_dataset(self) -> MultiviewDataset:
        self.setup()
        return self._datasets["test"]

    def split_names(self) -> list[str]:
        """Per project row: ``"train"``, ``"validation"``, ``"test"`` or ``"unused"``."""
        self.setup()
        names = np.full(len(self.project), "unused", dtype=object)
        names[self.train_indices] = "train"
        names[self.val_indices] = "validation"
        names[self.test_indices] = "test"
        return [str(s) for s in names]

    def _loader(self, dataset: Any, batch_size: int, shuffle: bool) -> DataLoader:
        """A loader of ``dataset``; ``shuffle``: in ``EpochSeededSampler`` order through
        ``EpochItems``, with the workers' base seed drawn from a generator of the data seed
        (not the global one), so the workers' seeds are the same whichever epoch a run
        starts (or resumes) in."""
        sampler = generator = None
        if shuffle:
            seed = int(self.config.training.rng_seed_data_pt)
            sampler = EpochSeededSampler(len(dataset), seed)
            sampler.set_epoch(self._coming_epoch())
            generator = torch.Generator().manual_seed(seed)
            dataset = EpochItems(dataset)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_items,
            generator=generator,
        )

    def _coming_epoch(self) -> int:
        """The epoch the trainer runs next (0 outside a trainer). Lightning creates the train
        iterator - and with DataLoader workers draws its first indices - before it calls
        ``set_epoch``; a resumed run's sampler must already be at the resumed epoch then, or
        that epoch replays epoch 0's order."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return int(trainer.fit_loop.epoch_progress.current.processed)

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        """The labelled loader, or ``{"labeled", "unlabeled"}`` loaders (see module doc)."""
        labeled = self._loader(self.train_dataset, self.train_batch_size, shuffle=True)
        unlabeled = self.unlabeled_dataset(num_clips_default=len(labeled))
        if unlabeled is None:
            return labeled
        return {"labeled": labeled, "unlabeled": self._loader(unlabeled, 1, shuffle=True)}

    def unlabeled_dataset(self, num_clips_default: int | None = None
                          ) -> UnlabeledClipDataset | None:
        """The unlabelled clip dataset (built once), or None when no unsupervised loss is
        active or there are no videos (warning: the losses then use the labelled batch).

        ``num_clips_default``: clips per epoch when ``training.unlabeled_clips_per_epoch`` is
        None (the train loader passes its number of batches)."""
        if self._unlabeled is not None or not self.use_unlabeled:
            return self._unlabeled
        self.setup()
        root = video_dir(self.config)
        has_videos = root is not None and root.is_dir() and any(
            p.suffix.lower() in VIDEO_SUFFIXES for p in root.iterdir())
        if not has_videos:
            warnings.warn(
                "unsupervised losses are active but there are no unlabelled videos "
                f"(data.video_dir: {root if root is not None else 'not set'}); they are "
                "applied to the labelled batches instead",
                stacklevel=2,
            )
            return None
        training = self.config.training
        num_clips = training.unlabeled_clips_per_epoch or num_clips_default
        self._unlabeled = UnlabeledClipDataset(
            self.config, self.project, training.unlabeled_clip_length,
            seed=int(training.rng_seed_data_pt), num_clips=num_clips,
        )
        return self._unlabeled

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, self.test_batch_size, shuffle=False)

    def predict_dataloader(self, indices: Sequence[int] | None = None) -> DataLoader:
        """All rows (or ``indices``) in order, without augmentation or shuffling."""
        self.setup()
        rows = np.arange(len(self.project)) if indices is None else np.asarray(indices)
        dataset = MultiviewDataset(
            self.project, self.config, rows, (), False, int(self.config.training.rng_seed_data_pt)
        )
        return self._loader(dataset, self.test_batch_size, shuffle=False)

    def train_keypoints_frame(self) -> np.ndarray:
        """``(n_train, V, K, 2)`` frame-pixel labels of the train split (no augmentation)."""
        self.setup()
        return self.project.keypoints[self.train_indices].copy()
