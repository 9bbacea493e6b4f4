"""What a command's console shows: mvcore's lines and warnings, not the libraries' noise.

Installed once when the CLI starts (``quiet_console``), before any library is imported:

- deprecation warnings (``DeprecationWarning``, ``PendingDeprecationWarning``,
  ``FutureWarning``) raised inside Lightning, torch, torchvision, torchmetrics, timm or
  pydantic are ignored: they name the libraries' own calls, which a user cannot change
  (e.g. Lightning's use of torch's deprecated ``LeafSpec``). The filter is scoped by module:
  a warning raised in mvcore or a plugin is shown;
- Lightning's log lines that are advertisements (``Tip: ... litlogger / litmodels``) or
  noise (``TPU available``, ``HPU available``, ``LOCAL_RANK: ... CUDA_VISIBLE_DEVICES``,
  ``Trainer.fit stopped: max_epochs reached``: the verdict line says how a run ended) are
  dropped by a logging filter on Lightning's loggers. ``GPU available: ..., used: ...``
  stays: it says whether the run uses the GPU;
- every warning shown is one line, ``warning: <message>``: ``warnings.formatwarning`` and
  ``warnings.showwarning`` (Lightning replaces the first when it is imported, with one that
  prefixes its own warnings with their file path). Where warnings are being recorded (a
  ``catch_warnings(record=True)``, as pytest's around every test) ``showwarning`` is left
  alone, so the recording still sees them.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any, TextIO

__all__ = ["LightningNoise", "THIRD_PARTY_MODULES", "one_line_warning", "quiet_console",
           "show_warning"]

#: the libraries whose deprecation warnings are theirs to fix, not the user's
THIRD_PARTY_MODULES = (r"(pytorch_lightning|lightning_fabric|lightning_utilities|lightning|"
                       r"torch|torchvision|torchmetrics|timm|pydantic|pydantic_core)(\.|$)")

#: the loggers Lightning's ``rank_zero_info`` and device lines are written to
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning",
                     "pytorch_lightning.utilities.rank_zero",
                     "lightning_fabric.utilities.rank_zero",
                     "lightning_utilities.core.rank_zero", "pytorch_lightning.accelerators.cuda",
                     "lightning_fabric.accelerators.cuda")

#: how the dropped Lightning lines start (the tip lines are matched anywhere: "litmodels")
_NOISE_PREFIXES = ("TPU available", "HPU available", "LOCAL_RANK: ", "`Trainer.fit` stopped")
_ADVERTS = ("Tip:", "litlogger", "litmodels", "Lightning AI", "lightning.ai")


class LightningNoise(logging.Filter):
    """Drops Lightning's advertisement tips and the start-up lines a user needs no action
    on (module docstring); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = str(record.getMessage())
        except (TypeError, ValueError):  # a malformed record is not ours to judge
            return True
        if any(word in text for word in _ADVERTS):
            return False
        return not text.lstrip().startswith(_NOISE_PREFIXES)


_FILTER = LightningNoise()


def one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                     lineno: int, line: str | None = None) -> str:
    """``warning: <message>``: no source line, no path, whitespace folded into one line."""
    return f"warning: {' '.join(str(message).split())}\n"


def show_warning(message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    """A warning as the user sees it: ``warning: <message>``, one line on stderr."""
    stream = file if file is not None else sys.stderr
    try:
        stream.write(one_line_warning(message, category, filename, lineno))
    except (OSError, ValueError):  # a closed or broken stream: nothing to show it on
        pass


def quiet_console() -> None:
    """Install the warning filters, the one-line warning format and the Lightning log filter
    (module docstring); calling it again adds nothing twice."""
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY_MODULES)
    warnings.formatwarning = one_line_warning
    if not _recording():
        warnings.showwarning = show_warning
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        _filter_handlers(logger)


def _recording() -> bool:
    """Whether a ``catch_warnings(record=True)`` is collecting warnings now (it swaps the
    module's private ``_showwarnmsg_impl`` for a list's ``append``)."""
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    return impl is not None and getattr(impl, "__name__", "") == "append"


def _filter_handlers(logger: logging.Logger) -> None:
    """The filter on the logger's handlers too: a logger's own filter does not see records
    that child loggers pass up to its handlers."""
    handlers: list[Any] = list(logger.handlers)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
