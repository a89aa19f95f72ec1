"""What ``search`` checks before its first trial, and ``validate`` too, beyond the file itself
(``tunecli.spec``): Optuna takes the sampler's and pruner's options, the device and the data
root exist, the data loads and fits the metric, and the model builds once.

Torch is imported inside the functions: ``validate --no-data`` never pays for it.
"""

from __future__ import annotations

from typing import Any

from tunecli.errors import SpecError
from tunecli.spec.checks import Problems, check_values
from tunecli.spec.models import StudySpec

__all__ = ["check_engine", "describe_data", "preflight"]


def check_engine(spec: StudySpec, source: str) -> None:
    """What only Optuna can tell about the file: whether it takes the sampler's and pruner's
    options (every problem at once, exit 2)."""
    from tunecli.engine.strategy.samplers import check_options

    problems = Problems(source)
    check_options(spec, problems.add)
    problems.raise_if_any()


def preflight(spec: StudySpec, data_root: str | None, source: str) -> dict[str, Any]:
    """What ``search`` checks before its first trial, and ``validate`` too: the device and the
    data root exist, the data loads and fits the metric, and the model builds once with the
    space's first values and gives one output per class for a batch of two examples.

    Returns what was loaded (for ``validate``'s summary).
    """
    check_engine(spec, source)
    if spec.trainer.kind != "builtin":
        return _own_code(spec, source)
    from tunecli.engine.strategy import space
    from tunecli.trainer import loop, models  # torch: your own code's trials go without it

    try:
        device, bundle = loop.prepare(spec.trainer, spec.metric, spec.base_dir, data_root)
        _check_augmentation(spec, bundle.is_image, bundle.task)
        config = models.full_config(spec.trainer.model, space.first_config(spec.space))
        _build_once(spec, config, bundle, device)
    except SpecError as exc:
        raise exc.found_in(source) from None
    return {"device": str(device), "task": bundle.task, "train": len(bundle.x_train),
            "validation": len(bundle.x_val), "test": len(bundle.x_test),
            "input_shape": list(bundle.input_shape), "outputs": bundle.n_outputs}


def _own_code(spec: StudySpec, source: str) -> dict[str, Any]:
    """Your function imports and takes (params, trial); your command's program exists."""
    from tunecli.engine.search.runners import command, function

    try:
        if spec.trainer.function:
            function.load(spec)
        else:
            command.check(spec)
    except SpecError as exc:
        raise exc.found_in(source) from None
    return {"trainer": spec.trainer.kind}


def _check_augmentation(spec: StudySpec, is_image: bool, task: str) -> None:
    """Augmentation that cannot apply to this data set is a mistake, not a no-op."""
    from tunecli.trainer.augment import IMAGE_KEYS, LABEL_KEYS

    for name, param in spec.space.items():
        can_be_on = (param.value if param.kind == "value" else
                     any(param.choice or []) if param.kind == "choice" else
                     (param.float_ or param.int_ or (0, 0))[1] > 0)
        if not can_be_on:
            continue
        if name in IMAGE_KEYS and not is_image:
            raise SpecError(f"{name} transforms images, and this data set is not images",
                            path=f"space.{name}", fix=f"Remove {name} from the space.")
        if name in LABEL_KEYS and task != "classification":
            raise SpecError(f"{name} mixes class labels, and this data set is {task}",
                            path=f"space.{name}", fix=f"Remove {name} from the space.")


def _check_user_table(spec: StudySpec, builder: Any) -> None:
    """A user model may declare its hyperparameters as the built-in ones are declared: a
    module-level ``HYPERPARAMETERS = {name: Hyperparameter(...)}`` (see
    examples/custom_model.py); the space is then checked against it too."""
    import inspect

    table = getattr(inspect.getmodule(builder), "HYPERPARAMETERS", None)
    if not isinstance(table, dict):
        return
    problems = Problems("")
    for name, param in spec.space.items():
        if name in table:
            check_values(table[name], param, f"space.{name}", problems)
    if problems.errors:  # preflight adds the source
        first = problems.errors[0]
        raise SpecError(first.message, path=first.path, fix=first.fix)


def _build_once(spec: StudySpec, config: dict[str, Any], bundle: Any, device: Any) -> None:
    import inspect

    import torch

    from tunecli.trainer import models

    name = spec.trainer.model
    builder = models.builder_for(name, spec.base_dir)
    if name not in models.MODELS:
        _check_user_table(spec, builder)
    try:
        inspect.signature(builder).bind(config, bundle.input_shape, bundle.n_outputs)
    except TypeError as exc:
        raise SpecError(f"{name} cannot be called as build(params, input_shape, n_outputs) "
                        f"({exc})", path="trainer.model",
                        fix="Define it as def build(params, input_shape, n_outputs).") from None
    except ValueError:
        pass  # no signature to inspect (a builtin or C function): the call below tells
    try:
        model = models.build(name, config, bundle.input_shape, bundle.n_outputs,
                             builder=builder).to(device)
        model.eval()
        with torch.inference_mode():
            out = model(bundle.x_train[:2])
    except SpecError:
        raise
    except Exception as exc:  # user code: whatever it raises is bad input, said in one line
        raise SpecError(f"{name} fails with the space's first values ("
                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]})",
                        path="trainer.model",
                        fix="Fix the model for these inputs (shape "
                            f"{list(bundle.input_shape)}, {bundle.n_outputs} outputs).") from None
    expected = bundle.n_outputs
    if tuple(out.shape) not in ((2, expected),) + (((2,),) if expected == 1 else ()):
        raise SpecError(f"{name} gives outputs of shape {list(out.shape)} for a batch of 2; "
                        f"expected [2, {expected}]", path="trainer.model",
                        fix=f"End the model with {expected} output unit(s) (n_outputs).")
    _optimizer_once(config, model, device)


def _optimizer_once(config: dict[str, Any], model: Any, device: Any) -> None:
    """Make the first trial's optimizer: a model without trainable parameters is caught here,
    and torch's optimizers pay their one-time import (``torch._dynamo``, ~0.7 s) before the
    first trial starts instead of inside it."""
    from tunecli.trainer import optim

    if not any(p.requires_grad for p in model.parameters()):
        raise SpecError("the model has no trainable parameters", path="trainer.model",
                        fix="Return a model with at least one parameter that requires grad.")
    optim.make_optimizer(config, [p for p in model.parameters() if p.requires_grad], device)


def describe_data(spec: StudySpec, data_root: str | None) -> list[str]:
    """`validate --data`: what the data holds (classes and balance; a CSV's cleaning)."""
    import numpy as np

    from tunecli.trainer import loop

    _, bundle = loop.prepare(spec.trainer, spec.metric, spec.base_dir, data_root)
    lines = []
    if bundle.task == "classification":
        labels = np.concatenate([t.cpu().numpy() for t in (bundle.y_train, bundle.y_val,
                                                           bundle.y_test)])
        counts = np.bincount(labels, minlength=bundle.n_outputs)
        share = ", ".join(f"{i}: {n} ({n / counts.sum():.0%})" for i, n in enumerate(counts))
        lines.append(f"classes ({bundle.n_outputs}): {share}")
    else:
        lines.append(f"target: mean {bundle.target_mean:.4g}, std {bundle.target_std:.4g} "
                     "(training part; trials see it standardised, metrics are in its units)")
    if spec.trainer.dataset.name == "csv":
        from tunecli.trainer.csv_table import read_csv
        from tunecli.trainer.data import with_base_dir

        # Parsed again for its cleaning counts, which the tensors no longer hold (validate only).
        table = read_csv(with_base_dir(spec.trainer.dataset, spec.base_dir))
        lines.append(f"csv: {len(table.target)} rows, {len(table.feature_names)} features "
                     f"({', '.join(table.feature_names[:12])}"
                     f"{', ...' if len(table.feature_names) > 12 else ''}), delimiter "
                     f"{table.delimiter!r}; missing cells: {table.dropped_rows} rows dropped, "
                     f"{table.filled_cells} cells filled")
    return lines
