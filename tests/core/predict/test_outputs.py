"""``mvcore predict`` outputs are complete or absent: a write cut short by Ctrl-C (kill -9:
``test_kill.py``), a cut-short file, a second writer, a video corrupt part-way and output
folders that are files. Each case runs the CLI in-process and checks the exit code, the
one-line message (no traceback) and the files; a re-run must give what an uninterrupted run
gives, byte for byte.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
from predict_models import VIEWS, csv_bytes, cut_short_to_csv, partial_files, predict_cli

from mvcore.data.videos import VideoWriter
from mvcore.files import DirectoryLock


def _messages(err: str) -> str:
    """stderr without the progress bars (each ends with a carriage return); never a
    traceback."""
    assert "Traceback" not in err, err
    return err.split("\r")[-1]


def test_ctrl_c_while_writing_leaves_no_partial_file_and_the_rerun_equals_a_clean_run(
        model_dir, tmp_path, monkeypatch, capsys):
    assert predict_cli(model_dir, "--out", str(tmp_path / "clean")) == 0
    out = model_dir / "video_preds"
    with monkeypatch.context() as patch:
        patch.setattr(pd.DataFrame, "to_csv", cut_short_to_csv(kill=False))
        assert predict_cli(model_dir) == 130
    assert _messages(capsys.readouterr().err) == "interrupted\n"
    assert not (out / "s1_3d.csv").exists() and partial_files(out) == []
    assert not (out / ".mvcore" / "s1.json").exists()  # the 2D CSVs are complete, not done
    assert predict_cli(model_dir) == 0
    printed = capsys.readouterr().out
    assert "predicting session s1 again: no manifest" in printed
    assert "1 session(s) predicted, 0 skipped" in printed
    assert csv_bytes(out) == csv_bytes(tmp_path / "clean")


def test_a_cut_short_output_a_new_checkpoint_or_other_settings_are_predicted_again(
        model_dir, capsys):
    assert predict_cli(model_dir) == 0
    out = model_dir / "video_preds"
    good = csv_bytes(out)
    assert predict_cli(model_dir) == 0
    assert "skipped session s1: its outputs in" in capsys.readouterr().out
    lines = (out / "s1_3d.csv").read_text().splitlines(keepends=True)
    (out / "s1_3d.csv").write_text("".join(lines[:4]))  # 3 of 9 frames, as a kill left it
    assert predict_cli(model_dir) == 0
    printed = capsys.readouterr().out
    assert re.search(r"predicting session s1 again: s1_3d\.csv is \d+ bytes, \d+ when it was "
                     r"written \(cut short or changed\)", printed)
    assert csv_bytes(out) == good
    os.utime(model_dir / "checkpoints" / "best.ckpt")  # as a resumed training would
    assert predict_cli(model_dir) == 0
    checkpoint = model_dir / "checkpoints" / "best.ckpt"
    assert f"predicting session s1 again: the checkpoint {checkpoint} is not the one its " \
        "outputs were made with" in capsys.readouterr().out
    assert predict_cli(model_dir, "--labeled-video") == 0
    assert "predicting session s1 again: its labelled videos were not made" in \
        capsys.readouterr().out
    assert predict_cli(model_dir) == 0  # the CSVs of a run with videos are the same
    assert "skipped session s1" in capsys.readouterr().out
    assert predict_cli(model_dir, "--precision", "bf16-mixed") == 0
    assert "predicting session s1 again: precision was 32, now bf16-mixed" in \
        capsys.readouterr().out


def test_a_second_writer_is_refused_in_one_line_and_writes_nothing(model_dir, capsys):
    out = model_dir / "video_preds"
    with DirectoryLock(out, "predict"):  # another mvcore predict into the same folder
        assert predict_cli(model_dir, "--labeled-video") == 2
    err = _messages(capsys.readouterr().err)
    assert re.fullmatch(rf"error: {re.escape(str(out))} is in use by mvcore predict \(pid "
                        rf"{os.getpid()} on .+\); wait until it finishes \(or stop it\) and run "
                        r"predict again\n", err), err
    assert sorted(p.name for p in out.iterdir()) == [".mvcore.lock"]
    assert predict_cli(model_dir, "--labeled-video") == 0  # released: it runs


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_video_corrupt_part_way_keeps_the_frames_before_it_marked_incomplete(
        model_dir, tmp_path, capsys):
    videos = model_dir.parent / "project" / "videos"
    rng = np.random.default_rng(5)
    for view in VIEWS:
        with VideoWriter(videos / f"s1_{view}.mp4", 10, 48, 64, threads=1) as writer:
            writer.write((rng.random((24, 48, 64, 3)) * 255).astype(np.uint8))
    assert predict_cli(model_dir, "--batch-size", "1") == 0  # same batches: same bytes below
    out = model_dir / "video_preds"
    clean = csv_bytes(out)
    manifest = (out / ".mvcore" / "s1.json").read_bytes()
    for view in VIEWS:  # a second session, s2, of the same (good) videos
        shutil.copyfile(videos / f"s1_{view}.mp4", videos / f"s2_{view}.mp4")
    video = videos / "s1_c2.mp4"
    good = video.read_bytes()
    bad = bytearray(good)
    start, end = bad.find(b"mdat"), bad.find(b"moov")
    bad[(start + end) // 2:(start + end) // 2 + 2000] = bytes(2000)
    video.write_bytes(bytes(bad))
    capsys.readouterr()

    assert predict_cli(model_dir, "--batch-size", "1", "--labeled-video") == 2
    err = _messages(capsys.readouterr().err)
    match = re.fullmatch(
        rf"error: {re.escape(str(video))}: cannot decode frame (\d+) \(Invalid data found when "
        r"processing input\); the video is damaged from there on; frames 0-(\d+) of session "
        rf"s1 were predicted and kept in {re.escape(str(out))} as s1_<view>\.incomplete\.csv, "
        r"s1_3d\.incomplete\.csv, labeled_videos/s1_<view>_labeled\.incomplete\.mp4 "
        r"\(incomplete by name, never taken as done\); repair or re-export the video and run "
        r"mvcore predict again\n", err)
    assert match, err
    frame = int(match.group(1))
    assert 0 < frame < 24 and int(match.group(2)) == frame - 1
    for view in VIEWS:  # the frames before it, exactly as the clean run predicted them
        kept = (out / f"s1_{view}.incomplete.csv").read_bytes().splitlines(keepends=True)
        assert kept == clean[f"s1_{view}.csv"].splitlines(keepends=True)[:3 + frame]
        assert _frames(out / "labeled_videos" / f"s1_{view}_labeled.incomplete.mp4") == frame
    kept = (out / "s1_3d.incomplete.csv").read_bytes().splitlines(keepends=True)
    assert kept == clean["s1_3d.csv"].splitlines(keepends=True)[:1 + frame]
    # the earlier complete run is left as it was, described by its own manifest
    csvs = csv_bytes(out)
    assert {n: b for n, b in csvs.items() if n.startswith("s1_") and "incomplete" not in n} \
        == clean
    assert (out / ".mvcore" / "s1.json").read_bytes() == manifest
    # the other session was predicted (complete, with its manifest) before the run failed
    assert {n.replace("s2_", "s1_"): b for n, b in csvs.items() if n.startswith("s2_")} == clean
    assert (out / ".mvcore" / "s2.json").is_file()
    assert sorted(p.name for p in (out / "labeled_videos").iterdir()) == sorted(
        [f"s1_{view}_labeled.incomplete.mp4" for view in VIEWS]
        + [f"s2_{view}_labeled.mp4" for view in VIEWS])
    assert partial_files(out) == []

    video.write_bytes(good)  # repaired
    assert predict_cli(model_dir, "--batch-size", "1", "--labeled-video") == 0
    assert "1 session(s) predicted, 1 skipped" in capsys.readouterr().out  # s2 is done
    assert {n: b for n, b in csv_bytes(out).items() if n.startswith("s1_")} == clean
    assert sorted(p.name for p in (out / "labeled_videos").iterdir()) == sorted(
        f"s{s}_{view}_labeled.mp4" for s in (1, 2) for view in VIEWS)  # .incomplete: gone


def test_output_folders_that_are_files_are_refused_in_one_line(model_dir, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert predict_cli(model_dir, "--out", str(a_file)) == 2
    assert _messages(capsys.readouterr().err) == \
        f"error: --out {a_file} is a file, not a folder; give a folder path\n"
    assert predict_cli(model_dir, "--out", str(a_file / "sub")) == 2
    assert _messages(capsys.readouterr().err) == (
        f"error: --out {a_file / 'sub'}: cannot write there (Not a directory); choose a folder "
        "you can write to\n")
    assert a_file.read_text() == "x"
