"""The mvcore entry point: how failures become exit codes and one-line messages."""

from __future__ import annotations

import errno

import pytest

from mvcore.cli import main as cli


def _failing(exc: BaseException):  # noqa: ANN202
    def run(args):  # noqa: ANN001, ANN202
        raise exc
    return run


def _run_with(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> int:
    """Run ``mvcore triangulate`` with its work replaced by raising ``exc``."""
    from mvcore.cli.commands import triangulate_cmd

    monkeypatch.setattr(triangulate_cmd, "run", _failing(exc))
    return cli.main(["triangulate", "p", "--out", "x.csv"])


def test_a_full_disk_is_one_line_naming_the_file(monkeypatch, capsys):
    exc = OSError(errno.ENOSPC, "No space left on device", "/data/out/s1_3d.csv")
    assert _run_with(monkeypatch, exc) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: /data/out/s1_3d.csv: No space left on device (OSError)")


def test_debug_switch_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("MVCORE_DEBUG", "1")
    with pytest.raises(PermissionError):
        _run_with(monkeypatch, PermissionError(errno.EACCES, "Permission denied", "/ro/x"))


def test_interrupt_exits_130(monkeypatch, capsys):
    assert _run_with(monkeypatch, KeyboardInterrupt()) == 130
    assert "interrupted" in capsys.readouterr().err
