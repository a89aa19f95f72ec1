"""Your code, imported: a function named ``file.py:function`` (a file beside the study) or
``package.module:function``; a model builder (``trainer.model``) or a training function
(``trainer.function``)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from tunecli.errors import SpecError

__all__ = ["import_function"]


def _import_beside(target: str, base_dir: str | None) -> Any:
    """``import target``, found first beside the study file."""
    with _beside(base_dir):
        return importlib.import_module(target)


@contextlib.contextmanager
def _beside(folder: str | None) -> Iterator[None]:
    """``folder`` on ``sys.path`` only while a module (and what it imports as it loads) is
    imported: the process's path is as it was afterwards."""
    if not folder or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


def import_function(reference: str, base_dir: str | None, key: str) -> Callable[..., Any]:
    """'pkg.mod:fn' or 'file.py:fn' -> the function (a file relative to ``base_dir``); a
    SpecError at ``key`` says what is wrong."""
    target, _, func_name = reference.rpartition(":")
    if not target or not func_name:
        raise SpecError(f"{reference!r} is not 'module:function'", path=key,
                        fix="Write e.g. my_module:function or file.py:function.")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_absolute() and base_dir:
                path = Path(base_dir) / path
            if not path.exists():
                raise SpecError(f"file {path} not found", path=key,
                                fix="Give the path relative to the study file.")
            # one module per file: two model.py files in different folders are two modules
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            module_name = f"tunecli_user_{path.stem}_{digest}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[module_name] = module
            with _beside(str(path.resolve().parent)):  # its sibling modules import too
                spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = _import_beside(target, base_dir)
    except SpecError:
        raise
    except Exception as exc:  # user code: any import error is bad input
        raise SpecError(f"cannot import {target} ({type(exc).__name__}: {exc})",
                        path=key, fix="Check the module path and its imports.") \
            from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SpecError(f"{target} has no function {func_name!r}", path=key,
                        fix="Name a function defined in that module.")
    return cast(Callable[..., Any], func)
