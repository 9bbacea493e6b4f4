"""mvcore.context: the facts a component is built with, and the paths in its params."""

from __future__ import annotations

from pathlib import Path

from mvcore.context import Context


def _context(base_dir: Path | None) -> Context:
    return Context(("a", "b"), ("k",), 64, 64, base_dir=str(base_dir) if base_dir else None)


def test_resolve_path_tries_the_path_as_given_then_under_the_configs_folder(tmp_path,
                                                                            monkeypatch):
    config_dir, elsewhere = tmp_path / "project", tmp_path / "cwd"
    config_dir.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (config_dir / "w.pth").write_bytes(b"x")
    assert _context(config_dir).resolve_path("w.pth") == (
        config_dir / "w.pth", [Path("w.pth"), config_dir / "w.pth"])
    (elsewhere / "w.pth").write_bytes(b"y")  # the path as given wins
    assert _context(config_dir).resolve_path("w.pth")[0] == Path("w.pth")
    missing = _context(config_dir).resolve_path("none.pth")  # every path tried, for the error
    assert missing == (Path("none.pth"), [Path("none.pth"), config_dir / "none.pth"])
    absolute = tmp_path / "abs.pth"
    assert _context(config_dir).resolve_path(str(absolute)) == (absolute, [absolute])
    assert _context(None).resolve_path("w2.pth") == (Path("w2.pth"), [Path("w2.pth")])
