"""Labelled videos: markers drawn on the frames and the mp4 they are written to."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from mvcore.predict.rendering import draw_markers


def test_draw_markers_colours_discs_and_skips_hidden_points():
    frames = np.full((2, 40, 50, 3), 128, np.uint8)
    colors = np.array([[255, 0, 0], [0, 255, 0]], np.uint8)
    keypoints = np.array([[[10.2, 20.4], [48.0, 1.0]], [[np.nan, 5.0], [30.0, 30.0]]])
    visible = np.array([[True, True], [True, False]])
    draw_markers(frames, keypoints, visible, colors, radius=3)
    assert frames[0, 20, 10].tolist() == [255, 0, 0] and frames[0, 23, 10].tolist() == [255, 0, 0]
    assert frames[0, 20, 14].tolist() == [0, 0, 0]            # the rim
    assert frames[0, 20, 16].tolist() == [128, 128, 128]      # outside
    assert frames[0, 1, 48].tolist() == [0, 255, 0]           # clipped at the border
    assert (frames[1] == 128).all()                           # NaN and hidden: nothing drawn


def test_labeled_video_writer_draws_the_markers_into_the_video(tmp_path):
    import av

    from mvcore.predict.rendering import LabeledVideoWriter

    frames = np.full((3, 41, 50, 3), 128, np.uint8)  # an odd height: the last row is dropped
    colors = np.array([[255, 0, 0]], np.uint8)
    path = tmp_path / "labeled_videos" / "s_a_labeled.mp4"
    writer = LabeledVideoWriter(path, Fraction(10), 41, 50, colors)
    writer.write(frames, np.tile([[[20.0, 20.0]]], (3, 1, 1)), np.ones((3, 1), bool))
    assert frames[0, 20, 20].tolist() == [255, 0, 0]  # drawn in place
    assert not path.exists()
    writer.close()
    with av.open(str(path)) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == (3, 40, 50, 3)
    assert decoded[:, 20, 20, 0].min() > 200 and decoded[:, 20, 20, 1:].max() < 60  # red
    assert np.abs(decoded[:, 5, 40].astype(int) - 128).max() <= 3  # background


def test_aborted_labeled_video_leaves_nothing(tmp_path):
    from mvcore.predict.rendering import LabeledVideoWriter

    writer = LabeledVideoWriter(tmp_path / "v.mp4", Fraction(10), 16, 16,
                                np.zeros((1, 3), np.uint8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
