"""From a chosen configuration to a model: retrain on training + validation data, test once.

The search used the validation part to choose; the final model may learn from it too, and the
test part, never seen by any trial, gives the one honest estimate. What is saved:

- ``NAME.pt``: the model's state dict (plain tensors: ``torch.load(..., weights_only=True)``),
- ``NAME.json``: the configuration, the test metrics, what rebuilds the model, and its whole
  input pipeline (``pipeline``): ``load_model(json_path)`` gives a module that takes raw inputs,
- ``NAME.onnx`` / ``NAME.torchscript.pt`` when asked (``export``), the pipeline inside.

Example::

    from tunecli.api import load_model
    model = load_model("models/digits-best.json")      # model(raw pixels) -> probabilities
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunecli import __version__
from tunecli.errors import SpecError
from tunecli.spec import StudySpec

__all__ = ["Choice", "load_model", "load_network", "train"]


@dataclass
class Choice:
    """One configuration to train, and where it came from (``engine/choice`` picks it)."""

    spec: StudySpec
    params: dict[str, Any]
    epochs: int
    label: str                 # file stem of the outputs
    source: str                # for the JSON file and messages
    trial: int | None = None
    search_value: float | None = None
    why: str = ""              # why this trial (``--pick``), for the user


class _EpochPrinter:
    """Reporter for final training: one line per epoch (there is nothing to prune)."""

    def __init__(self, say: Callable[[str], None], epochs: int) -> None:
        self.say = say
        self.epochs = epochs

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        self.say(f"epoch {epoch:>3}/{self.epochs}  train_loss {metrics['train_loss']:.4f}  "
                 f"({metrics['epoch_seconds']:.2f}s)")


def train(choice: Choice, out: Path, say: Callable[[str], None],
          data_root: str | None = None, exports: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train the choice on training + validation data, test it, write OUT.pt and OUT.json
    (and OUT.onnx, OUT.torchscript.pt for ``exports``)."""
    import torch

    from tunecli.trainer import loop, pipeline

    spec = choice.spec
    result = loop.train(spec.trainer, choice.params, _EpochPrinter(say, choice.epochs),
                      metric=spec.metric, direction=spec.direction, base_dir=spec.base_dir,
                      data_root=data_root, final_epochs=choice.epochs)
    _, bundle = loop.prepare(spec.trainer, spec.metric, spec.base_dir, data_root)
    weights = out.with_suffix(".pt")
    info = {
        "source": choice.source,
        "study": spec.name,
        "trial": choice.trial,
        "search_metric": spec.metric,
        "search_value": choice.search_value,
        "test_metrics": {k: round(v, 6) for k, v in result.test_metrics.items()},
        "epochs": choice.epochs,
        "final_train_loss": result.history[-1]["train_loss"] if result.history else None,
        "trained_on": "training + validation parts",
        "params": choice.params,
        "config": result.config,
        "model": spec.trainer.model,
        "base_dir": spec.base_dir,
        "task": bundle.task,
        "input_shape": list(bundle.input_shape),
        "n_outputs": bundle.n_outputs,
        "classes": bundle.class_names,      # output i is classes[i]
        "features": bundle.feature_names,   # the network's inputs (one-hot: col=level)
        "pipeline": pipeline.describe(bundle),  # raw input -> network -> outputs, every step
        "normalization": {"mean": pipeline.listed(bundle.mean),
                          "std": pipeline.listed(bundle.std)},
        # regression: the network predicts standardised targets; prediction * std + mean
        "target_scaling": ({"mean": bundle.target_mean, "std": bundle.target_std}
                           if bundle.task == "regression" else None),
        "params_count": result.params_count,
        "device": result.device,
        "train_seconds": round(result.train_seconds, 3),
        "weights": weights.name,
        "trainer": spec.stored()["trainer"],
        "versions": {"tunecli": __version__, "torch": torch.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic(weights, lambda tmp: torch.save(result.state_dict, tmp))
    if exports:
        from tunecli.trainer.export import export

        model = load_model(out.with_suffix(".json"), info=info, state=result.state_dict)
        info["exports"] = {kind: export(model, kind, out, _atomic).name for kind in exports}
    _atomic(out.with_suffix(".json"),
            lambda tmp: tmp.write_text(json.dumps(info, indent=2, default=str) + "\n",
                                       encoding="utf-8"))
    return info


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def load_network(json_path: str | Path, map_location: str = "cpu", *,
                 info: dict[str, Any] | None = None,
                 state: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The trained network alone (eval mode; it takes normalised inputs) and its JSON info."""
    import torch

    from tunecli.trainer import models

    json_path = Path(json_path)
    if info is None:
        info = read_info(json_path)
    network = models.build(info["model"], info["config"], tuple(info["input_shape"]),
                           int(info["n_outputs"]), info.get("base_dir"))
    if state is None:
        weights = json_path.with_name(info["weights"])
        try:
            state = torch.load(weights, map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise SpecError(f"{weights} is missing: {json_path} names it as its weights",
                            source="MODEL", fix="Keep the .pt file beside the .json (tunecli "
                                                "train writes both), or train again.") from None
        except Exception as exc:
            raise SpecError(f"{weights} is not a weights file tunecli train wrote "
                            f"({type(exc).__name__})", source="MODEL",
                            fix="Train again: tunecli train NAME.") from None
    network.load_state_dict(state)
    return network.eval(), info


_INFO_KEYS = ("model", "config", "input_shape", "n_outputs", "weights")
MODEL_FIX = "Name the .json file tunecli train wrote (models/NAME.json)."


def read_info(json_path: Path) -> dict[str, Any]:
    """A model's JSON file, checked: a damaged or foreign one is bad input, not a traceback."""
    try:
        info = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{json_path} does not exist", source="MODEL", fix=MODEL_FIX) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {json_path} ({exc})", source="MODEL", fix=MODEL_FIX) from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{json_path} is not a model file: line {exc.lineno} column "
                        f"{exc.colno}: {exc.msg}", source="MODEL", fix=MODEL_FIX) from None
    missing = [key for key in _INFO_KEYS if not isinstance(info, dict) or key not in info]
    if missing:
        raise SpecError(f"{json_path} is not a model file tunecli train wrote (no "
                        f"{', '.join(missing)})", source="MODEL", fix=MODEL_FIX)
    return dict(info)


def load_model(json_path: str | Path, map_location: str = "cpu", *,
               info: dict[str, Any] | None = None,
               state: dict[str, Any] | None = None) -> Any:
    """The trained model with its input pipeline (a ``pipeline.PipelinedModel`` in eval mode):
    raw inputs in, probabilities or values out; ``model.info`` is the JSON file. A file from
    before the pipeline was recorded loads with a warning naming the steps it lacks."""
    import warnings

    from tunecli.trainer import pipeline

    network, info = load_network(json_path, map_location, info=info, state=state)
    steps, unknown = (({"outputs": info["n_outputs"], **info["pipeline"]}, [])
                      if "pipeline" in info else pipeline.from_old_info(info))
    model = pipeline.PipelinedModel(network, steps).eval()
    model.info = info
    model.unknown_steps = [f"{json_path} does not record {step}; retrain it with tunecli train "
                           "to record every step" for step in unknown]
    for text in model.unknown_steps:
        warnings.warn(text, stacklevel=2)
    return model
