"""Progress bars for long runs, and the switch that keeps the libraries' own chatter off.

The command line shows one progress view of its own (a line per stage and its outcome). Unless it
runs with ``--verbose``, it sets ``CHARACTERFLYWHEEL_QUIET=1`` (inherited by the herding process)
and calls ``silence_libraries``: transformers', datasets' and huggingface_hub's bars and logging,
the Trainer's printed loss dicts, deprecation warnings, and our own per-reply bars stay off. The
Python API keeps everything on: whoever calls a stage decides.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partialmethod

from tqdm.auto import tqdm

QUIET_ENV = "CHARACTERFLYWHEEL_QUIET"
NOISY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "trl", "peft", "accelerate", "sentence_transformers",
                 "mlflow", "alembic", "httpx", "urllib3", "uvicorn", "uvicorn.error", "uvicorn.access", "torch")


def quiet() -> bool:
    return os.environ.get(QUIET_ENV) == "1"


def show_bars(requested: bool) -> bool:
    """Whether a progress bar the caller asked for is shown (not in quiet mode)."""
    return requested and not quiet()


def silence_libraries() -> None:
    """Libraries' bars, logging below errors and warnings off, for this process and its children."""
    os.environ[QUIET_ENV] = "1"
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # spawned processes start with it
    warnings.filterwarnings("ignore")
    _disable_tqdm()
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def _disable_tqdm() -> None:
    """Bars of libraries that call tqdm themselves (transformers' GGUF conversion, for one) off in this
    process: ``TQDM_DISABLE`` only reaches processes started after it is set, since tqdm reads its
    environment defaults when it is imported. A caller's explicit ``disable=False`` still wins."""
    from tqdm import std

    if not getattr(std.tqdm.__init__, "_characterflywheel_quiet", False):
        quiet_init = partialmethod(std.tqdm.__init__, disable=True)
        quiet_init._characterflywheel_quiet = True  # type: ignore[attr-defined]
        std.tqdm.__init__ = quiet_init  # type: ignore[method-assign]


def quiet_trainer(trainer: object) -> None:
    """Drop the callback that prints every logged dict when bars are off (the loss stays in the logs)."""
    if quiet():
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)  # type: ignore[attr-defined]


@contextmanager
def progress_bar(total: int, description: str, enabled: bool) -> Iterator[tqdm]:
    """A tqdm bar over ``total`` replies; a silent no-op bar when ``enabled`` is False or in quiet mode."""
    with tqdm(total=total, desc=description, unit="reply", disable=not show_bars(enabled), leave=False) as bar:
        yield bar
