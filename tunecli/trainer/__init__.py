"""The PyTorch side of tunecli, reached through one call: ``run(trainer, params, reporter)``.

``data`` holds the data sets, ``models`` the model builders, ``loop`` the training loop. The
study engine knows nothing else of PyTorch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run"]


def run(*args: Any, **kwargs: Any) -> Any:
    """See ``tunecli.trainer.loop.run`` (imported lazily: torch is slow to import)."""
    from tunecli.trainer.loop import run as _run

    return _run(*args, **kwargs)
