"""Lazy package exports (PEP 562): a package names its public objects without importing the
modules that define them, so importing it stays cheap (``tunecli --help`` never loads Optuna or
PyTorch) and no module has to import another package at start-up."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) on first use."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)
    return __getattr__
