"""Core tests run with plugin autoload off: installed plugins must not leak in."""

import pytest


@pytest.fixture(autouse=True)
def _no_plugin_autoload(monkeypatch):
    monkeypatch.setenv("MVCORE_LOAD_PLUGINS", "")
    monkeypatch.delenv("MVCORE_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("MVCORE_DISABLE_PLUGINS", raising=False)
