"""Trained models as functions: ``train``, ``predict`` and loading (see ``tunecli.api``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunecli.api.studies import choose_for_training, url_of
from tunecli.errors import SpecError, did_you_mean

if TYPE_CHECKING:
    import optuna

__all__ = ["held_out_part", "load_model", "predict", "train"]


def train(source: str | Path | optuna.Study, *, out: str | Path | None = None,
          trial: int | None = None, epochs: int | None = None, storage: str | None = None,
          data_root: str | None = None, exports: tuple[str, ...] = (),
          progress: bool = False) -> Any:
    """``tunecli train``: a study's best trial (or ``trial``), or a study file fixed to one
    configuration, retrained on training + validation data and tested once; saved as
    OUT.pt/OUT.json (``models/NAME`` by default) and returned loaded (``load_model``)."""
    import optuna

    from tunecli.trainer import final

    if isinstance(source, optuna.Study):
        storage = storage or url_of(source)
        source = source.study_name
    choice = choose_for_training(str(source), storage=storage, trial=trial, epochs=epochs)
    target = Path(out) if out is not None else Path("models") / choice.label
    final.train(choice, target, print if progress else (lambda line: None), data_root,
                exports)
    return final.load_model(target.with_suffix(".json"))


def load_model(model_file: str | Path) -> Any:
    """The model ``train`` saved, as a ``torch.nn.Module`` that applies its own input pipeline:
    ``model(raw inputs)`` gives class probabilities, or values in the target's units
    (``tunecli.trainer.pipeline`` says what raw inputs are); ``model.info`` is its JSON file."""
    from tunecli.trainer import final

    return final.load_model(_model_file(model_file))


def predict(model_file: str | Path, source: str) -> Any:
    """``tunecli predict``: the model's predictions for ``source`` (a path, or ``-``), scored
    when it holds the targets (a ``trainer.prediction.Prediction``)."""
    from tunecli.trainer import inputs, prediction

    model = load_model(model_file)
    found = inputs.read(source, model.pipeline)
    batch = int((model.info.get("trainer") or {}).get("eval_batch_size") or 1024)
    return prediction.predict(model, found, batch)


def _model_file(model_file: str | Path) -> Path:
    """The model's JSON file (``models/x``, ``models/x.pt`` name it too), or a one-line error."""
    path = Path(model_file)
    if path.suffix != ".json":
        path = path.with_name(path.name.removesuffix(".pt") + ".json")
    if not path.is_file():
        from tunecli.trainer.final import MODEL_FIX

        raise SpecError(f"no model file {path}", source="MODEL", fix=MODEL_FIX)
    return path


def held_out_part(model_file: str | Path, data_root: str | None = None) -> Any:
    """The held-out test part the model was tested on, raw (as ``load_model``'s model takes
    it), with its targets: a ``trainer.inputs.NewInputs`` (``x``, ``targets``)."""
    import numpy as np

    from tunecli.spec.models import TrainerSpec
    from tunecli.trainer import data
    from tunecli.trainer.final import read_info
    from tunecli.trainer.inputs import NewInputs

    info = read_info(_model_file(model_file))
    trainer = TrainerSpec.model_validate(info["trainer"])
    root = data.resolve_data_root(trainer.data_root, info.get("base_dir"), data_root)
    x, y = data.raw_test_part(trainer.dataset, root, info.get("base_dir"))
    return NewInputs(np.ascontiguousarray(x, dtype=np.float32),
                     y.astype(np.int64 if info["task"] == "classification" else np.float32),
                     [str(i) for i in range(len(x))])


def train_choice(choice: Any, target: Path, say: Any, data_root: str | None = None,
                 exports: tuple[str, ...] = ()) -> dict[str, Any]:
    """Retrain what ``choose_for_training`` chose, test it once, save it at ``target``: the
    model's info (``test_metrics``, ``search_value``, ...); ``say(line)`` tells progress."""
    from tunecli.trainer import final

    return final.train(choice, target, say, data_root, exports)


def check_exports(kinds: list[str]) -> tuple[str, ...]:
    """``--export`` values, checked before training (a typo must not cost the training)."""
    from tunecli.trainer.export import EXPORTS

    for kind in kinds:
        if kind not in EXPORTS:
            raise SpecError(f"--export {kind!r} is not a format", source="--export",
                            fix=did_you_mean(kind, list(EXPORTS)) or
                            f"Use one of: {', '.join(EXPORTS)}.")
    return tuple(dict.fromkeys(kinds))


def write_predictions(found: Any, out: Any, proba: bool) -> None:
    """``predict``'s CSV: the class (or value), and each class's probability with ``proba``."""
    from tunecli.trainer.prediction import write_csv

    write_csv(found, out, proba)
