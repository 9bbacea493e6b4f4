"""Writing mp4s (``VideoWriter``): what is written decodes back, atomically."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from mvcore.data.videos import VideoWriter, probe_video


def _decode(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_writer_writes_atomically_and_the_frames_decode_back(tmp_path):
    levels = 20 + 30 * np.arange(6)  # uniform grey frames survive yuv420p and H.264 closely
    frames = np.broadcast_to(levels[:, None, None, None], (6, 32, 48, 3)).astype(np.uint8)
    path = tmp_path / "out" / "s_a.mp4"
    writer = VideoWriter(path, Fraction(25), 32, 48)
    writer.write(frames[:4])
    writer.write(frames[4:])
    assert not path.exists()  # only under its name after close
    writer.close()
    assert not writer.partial.exists()
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.height, info.width) == (6, 25, 32, 48)
    decoded = _decode(path)
    np.testing.assert_allclose(decoded.mean((1, 2, 3)), levels, atol=2.0)


def test_writer_drops_an_odd_row_and_column_and_threads_1_is_reproducible(tmp_path):
    frames = (np.random.default_rng(0).random((3, 33, 47, 3)) * 255).astype(np.uint8)
    for name in ("one.mp4", "two.mp4"):
        with VideoWriter(tmp_path / name, 10, 33, 47, crf=16, threads=1) as writer:
            writer.write(frames)
    info = probe_video(tmp_path / "one.mp4")
    assert (info.height, info.width) == (32, 46)  # yuv420p needs even sizes
    assert (tmp_path / "one.mp4").read_bytes() == (tmp_path / "two.mp4").read_bytes()


def test_abort_and_an_error_leave_nothing_behind(tmp_path):
    path = tmp_path / "s_a.mp4"
    writer = VideoWriter(path, 10, 16, 16)
    writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyError), VideoWriter(path, 10, 16, 16) as writer:
        writer.write(np.zeros((2, 16, 16, 3), np.uint8))
        raise KeyError("stop")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("frames", "reason"), [
    (np.random.default_rng(0).integers(0, 255, (8, 48, 64, 3), np.uint8),
     "Invalid data found when processing input"),
    (np.zeros((2, 16, 16, 3), np.uint8), "no video stream")])
def test_a_video_cut_short_before_its_index_is_one_line_naming_it(tmp_path, frames, reason):
    from mvcore.errors import DataError

    path = tmp_path / "s_a.mp4"
    with VideoWriter(path, 10, *frames.shape[1:3]) as writer:  # the mp4 index comes last
        writer.write(frames)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as error:
        probe_video(path)
    assert str(error.value) == (
        f"cannot open video {path}: {reason} (a damaged or unfinished file, or not a video); "
        "repair or re-export it, or move it out of the folder")
