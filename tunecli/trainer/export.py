"""A trained model for serving outside tunecli: ONNX (onnxruntime) and TorchScript (torch
alone), each with its whole input pipeline inside (see ``pipeline``) and the pipeline's
description attached (ONNX metadata ``tunecli_pipeline``; TorchScript extra file
``tunecli_pipeline.json``), so the columns, levels and classes travel with the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tunecli.errors import SpecError

__all__ = ["EXPORTS", "example_input", "export"]

EXPORTS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
METADATA_KEY = "tunecli_pipeline"


def example_input(model: Any, n: int = 2) -> torch.Tensor:
    """``n`` raw examples of the model's input shape (zeros: a valid level index, a number)."""
    return torch.zeros((n, *model.pipeline["raw_shape"]), dtype=torch.float32)


def export(model: Any, kind: str, out: Path, write: Callable[[Path, Callable[[Path], object]],
                                                            None]) -> Path:
    """Write ``model`` (a ``PipelinedModel``) as ``kind`` beside ``out``; the file's path.
    ``write(path, writer)`` writes atomically (the caller's)."""
    path = out.with_name(out.name + EXPORTS[kind])
    described = json.dumps(model.pipeline)
    if kind == "onnx":
        write(path, lambda tmp: _onnx(model, tmp, described))
    else:
        write(path, lambda tmp: _torchscript(model, tmp, described))
    return path


def _torchscript(model: Any, path: Path, described: str) -> None:
    with warnings.catch_warnings():  # torch marks TorchScript deprecated; it still serves
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(  # type: ignore[no-untyped-call]
            model, (example_input(model),), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"tunecli_pipeline.json": described})


def _onnx(model: Any, path: Path, described: str) -> None:
    try:
        import onnx
    except ImportError:
        raise SpecError("--export onnx needs the onnx packages", source="--export",
                        fix="pip install 'tunecli[onnx]' (onnx, onnxscript, onnxruntime).") \
            from None
    chatter = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), \
            contextlib.redirect_stderr(chatter):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example_input(model),), input_names=["input"],
                                    output_names=["output"],
                                    dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
                                    dynamo=True, verbose=False)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, described
    onnx.save(proto, str(path))
