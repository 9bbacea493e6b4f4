"""Decoding for prediction: lockstep streaming of a session's views and the model input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from videos import grey_frames, write_video

from mvcore.data.dataset import IMAGENET_MEAN, IMAGENET_STD, load_image
from mvcore.data.sessions import VideoSession, find_sessions
from mvcore.data.videos import probe_video
from mvcore.errors import DataError
from mvcore.predict.decoding import SessionReader, frames_to_model_input, view_frames


def test_reader_decodes_views_in_lockstep_in_batches(tmp_path):
    write_video(tmp_path / "s_a.mp4", grey_frames(10, offset=0))
    write_video(tmp_path / "s_b.mp4", grey_frames(10, offset=100))
    (session,) = find_sessions(tmp_path, ["a", "b"])
    seen = []
    for frames in SessionReader(session, batch_size=4):
        assert frames.shape[1:] == (2, 32, 32, 3)  # one buffer when the views share a size
        views = view_frames(frames)
        seen.append(np.stack([f.reshape(f.shape[0], -1).mean(1) for f in views], 1))
    assert [len(s) for s in seen] == [4, 4, 2]
    levels = np.concatenate(seen)  # (T, V)
    expected = np.stack([8 * np.arange(10), 100 + 8 * np.arange(10)], 1)
    np.testing.assert_allclose(levels, expected, atol=2.0)


def test_reader_gives_views_of_different_sizes_as_a_list(tmp_path):
    write_video(tmp_path / "s_a.mp4", grey_frames(3, size=32))
    write_video(tmp_path / "s_b.mp4", grey_frames(3, size=48, offset=50))
    (session,) = find_sessions(tmp_path, ["a", "b"])
    (frames,) = list(SessionReader(session, batch_size=8))
    assert [f.shape for f in frames] == [(3, 32, 32, 3), (3, 48, 48, 3)]
    images = frames_to_model_input(frames, (16, 16))
    assert images.shape == (3, 2, 3, 16, 16)
    grey = images[:, :, 0].mean((-1, -2)) * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # (T, V) in [0, 1]
    np.testing.assert_allclose(grey.numpy() * 255, [[0, 50], [8, 58], [16, 66]], atol=2.0)


def test_reader_reports_a_view_that_ends_early(tmp_path):
    write_video(tmp_path / "s_a.mp4", grey_frames(6))
    write_video(tmp_path / "s_b.mp4", grey_frames(4))
    infos = [probe_video(tmp_path / f"s_{v}.mp4") for v in "ab"]
    infos[1].num_frames = 6  # pretend the header lied
    session = VideoSession("s", ["a", "b"], infos, num_frames=6)
    sizes = []
    with pytest.raises(DataError, match="s_b.mp4 ended after 4 frames"):
        for frames in SessionReader(session, batch_size=3):
            sizes.append(len(frames))
    assert sizes == [3, 1]  # the 4 frames both views have, then the error


def test_reader_reports_what_frame_by_frame_reading_would_meet_first(tmp_path):
    # each view is decoded by its own thread, a batch at a time; the error raised is the one
    # reading the views frame by frame, in order, meets first
    infos = [probe_video(write_video(tmp_path / f"s_{v}.mp4", grey_frames(2))) for v in "abc"]
    reader = SessionReader(VideoSession("s", list("abc"), infos, num_frames=2), 4)

    def first(reads):
        failure = reader._first_failure(reads, 2, 10)  # frame 2 of the batch = frame 10
        return None if failure is None else (failure.path.name, failure.frame, str(failure))

    ended, broken = (2, ("ended", "")), (2, ("decode", "Invalid data"))
    assert first([ended, ended, ended]) is None  # every view ended there: the end
    name, frame, message = first([ended, broken, (4, None)])
    assert (name, frame) == ("s_b.mp4", 10) and "cannot decode frame 10 (Invalid data)" in message
    name, _, message = first([(3, ("ended", "")), ended, (2, ("size", "(16, 16)"))])
    assert name == "s_b.mp4" and "ended after 10 frames while other views go on" in message
    name, _, message = first([(4, None), (2, ("size", "(16, 16)")), (3, ended[1])])
    assert name == "s_b.mp4" and "frame 10 is (16, 16) (h, w), the video started at (32, 32)" \
        in message


def test_model_input_matches_the_training_image_loader(tmp_path):
    rng = np.random.default_rng(0)
    image = (rng.random((48, 80, 3)) * 255).astype(np.uint8)
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "frame.png")
    reference = load_image(tmp_path / "frame.png", (32, 32))
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    reference = (reference - mean) / std
    other = (rng.random((2, 64, 64, 3)) * 255).astype(np.uint8)  # views may differ in size
    batch = frames_to_model_input([np.stack([image, image]), other], (32, 32))
    assert batch.shape == (2, 2, 3, 32, 32) and batch.dtype == torch.float32
    # uint8 resize: within one grey level of the float loader (in normalised units)
    assert (batch[0, 0] - reference).abs().max() <= 1.0 / 255 / min(IMAGENET_STD) + 1e-6
    same = frames_to_model_input(np.stack([np.stack([image, image])] * 2, 1), (32, 32))
    assert same.shape == (2, 2, 3, 32, 32)
    torch.testing.assert_close(same[:, 0], batch[:, 0])  # one call for all views: same result
    torch.testing.assert_close(same[:, 1], batch[:, 0])
