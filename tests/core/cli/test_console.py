"""The console filters of ``mvcore.cli.console``: Lightning's tips and start-up noise and
the libraries' deprecation warnings go; mvcore's and plugins' warnings stay, one line each."""

from __future__ import annotations

import io
import logging
import warnings

from mvcore.cli.console import LightningNoise, one_line_warning, quiet_console, show_warning


def _record(text: str) -> logging.LogRecord:
    return logging.LogRecord("pytorch_lightning.utilities.rank_zero", logging.INFO, "x.py", 1,
                             text, None, None)


def test_lightning_tips_and_startup_noise_are_dropped_the_device_line_kept():
    noise = LightningNoise()
    for text in ("💡 Tip: For seamless cloud uploads and versioning, try installing "
                 "[litmodels](https://pypi.org/project/litmodels/) to enable ...",
                 "💡 Tip: For seamless cloud logging and experiment tracking, try installing "
                 "[litlogger](https://pypi.org/project/litlogger/) ...",
                 "TPU available: False, using: 0 TPU cores", "HPU available: False, using: 0 HPUs",
                 "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]",
                 "`Trainer.fit` stopped: `max_epochs=2` reached."):
        assert not noise.filter(_record(text)), text
    assert noise.filter(_record("GPU available: True (cuda), used: True"))
    assert noise.filter(_record("Restoring states from the checkpoint path at x.ckpt"))


def test_the_filter_is_on_lightnings_loggers_after_quiet_console():
    with warnings.catch_warnings():
        quiet_console()
        quiet_console()  # twice adds nothing twice
    filters = logging.getLogger("pytorch_lightning.utilities.rank_zero").filters
    assert sum(isinstance(f, LightningNoise) for f in filters) == 1


def _warn_from(module: str, category: type[Warning]) -> None:
    """A warning raised by code of ``module`` (as a library's own call raises it)."""
    exec(compile("import warnings\nwarnings.warn('old call', category)", "lib.py", "exec"),
         {"__name__": module, "category": category})


def test_libraries_deprecations_are_ignored_mvcores_and_plugins_warnings_kept():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_console()
        for module in ("torch.utils._pytree", "pytorch_lightning.utilities._pytree",
                       "lightning_fabric.x", "timm.models", "pydantic.main"):
            for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
                _warn_from(module, category)
        _warn_from("mvcore.training.fit", FutureWarning)
        _warn_from("mv_losses.pca", DeprecationWarning)
        _warn_from("torch.nn", UserWarning)  # not a deprecation: shown
        _warn_from("torchmetrics_extra", FutureWarning)  # another package, only a prefix
    assert [(w.category, w.filename) for w in caught] == [
        (FutureWarning, "lib.py"), (DeprecationWarning, "lib.py"), (UserWarning, "lib.py"),
        (FutureWarning, "lib.py")]


def test_a_warning_is_one_line_without_a_path():
    stream = io.StringIO()
    show_warning(UserWarning("labels and calibration:\n  cam_a is off"), UserWarning,
                 "/x/site-packages/lib.py", 3, file=stream)
    assert stream.getvalue() == "warning: labels and calibration: cam_a is off\n"
    assert one_line_warning("a b", UserWarning, "f.py", 1) == "warning: a b\n"
