"""Checks of a whole study against the registries: what a key's type alone cannot say.

Samplers, pruners, data sets, metrics, models and the typed hyperparameter table are looked up
here, so ``spec`` stays the plain schema. Every problem is collected and reported at once, one
line each with its key path and fix, so a user fixes a file in one pass.
"""

from __future__ import annotations

from typing import Any

from tunecli import catalogue
from tunecli.errors import SpecError, SpecErrors, did_you_mean
from tunecli.spec.grid import MAX_GRID_POINTS, grid_size
from tunecli.spec.models import DatasetSpec, ParamSpec, StudySpec

# Keys a sampler has of its own, which sampler.options must not repeat
OWN_KEYS = ("seed", "n_startup_trials", "search_space")
# Samplers that cannot search several objectives (Optuna's CMA-ES, Hyperopt's TPE)
SINGLE_OBJECTIVE_ONLY = ("hyperopt-tpe", "cmaes")

__all__ = ["ACCURACY_LIKE", "Problems", "check_spec", "check_values", "warnings"]

# Metrics where bigger is better; minimizing one is almost always a slip.
ACCURACY_LIKE = ("val_accuracy", "val_f1", "val_precision", "val_recall", "val_r2")


class Problems:
    """Collects SpecErrors for one source; ``raise_if_any`` reports them together."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[SpecError] = []

    def add(self, path: str, message: str, fix: str = "") -> None:
        self.errors.append(SpecError(message, source=self.source, path=path, fix=fix))

    def raise_if_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise SpecErrors(self.errors)


def check_spec(spec: StudySpec, source: str) -> None:
    """Every check that needs the registries; raises one SpecError listing all problems."""
    problems = Problems(source)
    if spec.trainer.kind == "builtin":
        _check_built_in(spec, problems)
    else:
        _check_own_code(spec, problems)
        if not problems.errors:
            _check_sampler(spec, problems.add)
    problems.raise_if_any()


def _check_built_in(spec: StudySpec, problems: Problems) -> None:
    """A study the built-in trainer trains: names against the registries and the table."""
    add = problems.add
    known_types = True
    for key in _changed(spec.trainer, OWN_CODE_KEYS):
        add(f"trainer.{key}", "applies to your own training code only",
            "Remove it, or set trainer.function or trainer.command.")
    for path, label, name, registry in (
            ("sampler.type", "sampler", spec.sampler.type, catalogue.SAMPLERS),
            ("pruner.type", "pruner", spec.pruner.type, catalogue.PRUNERS),
            ("trainer.dataset.name", "data set", spec.trainer.dataset.name,
             catalogue.DATASETS)):
        if name not in registry:
            known_types = False
            add(path, f"unknown {label} '{name}'",
                (label == "data set" and _as_file(name))
                or did_you_mean(name, registry) or f"Choose one of: {', '.join(registry)}.")

    metrics = dict.fromkeys(catalogue.CLASSIFICATION_METRICS + catalogue.REGRESSION_METRICS)
    if spec.metric not in metrics:
        add("metric", f"unknown metric '{spec.metric}'",
            did_you_mean(spec.metric, metrics) or f"Choose one of: {', '.join(metrics)}.")

    _check_objectives(spec, problems, metrics)
    model = spec.trainer.model
    builtin = model in catalogue.MODELS
    if not builtin and ":" not in model:
        add("trainer.model", f"unknown model '{model}'",
            did_you_mean(model, catalogue.MODELS)
            or f"Choose one of: {', '.join(catalogue.MODELS)}, or 'package.module:function'.")
    _check_dataset(spec.trainer.dataset, add)

    trainer = spec.trainer
    if trainer.cv and trainer.repeats > 1:
        add("trainer.repeats", "trainer.repeats and trainer.cv are both set",
            "Keep one: cv: K (folds) or repeats: N (seeds).")
    if (trainer.cv or trainer.repeats > 1) and spec.budget.epochs is not None:
        add("budget.epochs", "budget.epochs counts one run's epochs, and trainer.repeats/cv "
            "trains several runs per epoch", "Use budget.n_trials or budget.timeout instead.")
    _check_space(spec, problems, builtin)
    if spec.pruner.max_epochs is not None and spec.pruner.max_epochs > spec.trainer.epochs:
        add("pruner.max_epochs", "is larger than trainer.epochs", "Lower it or raise the epochs.")
    if known_types and not problems.errors:
        _check_sampler(spec, add)


def _check_dataset(dataset: DatasetSpec, add: Any) -> None:
    """The keys a data set kind needs, and those only one kind takes."""
    if dataset.name in ("csv", "csv-sequence", "tensors") and not dataset.path:
        example = "data.npz" if dataset.name == "tensors" else "my_data.csv"
        add("trainer.dataset.path", f"the {dataset.name} data set needs a file",
            f"Add path: {example} (relative to the study file).")
    if dataset.name == "image-folder" and not dataset.path:
        add("trainer.dataset.path", "the image-folder data set needs its folder",
            "Add path: photos/ (relative to the study file), holding a folder of images per "
            "class.")
    if dataset.size is not None and dataset.name != "image-folder":
        add("trainer.dataset.size", f"resizes an image-folder's images; the {dataset.name} "
            "data set keeps its own size", "Remove size.")
    if dataset.name == "csv-sequence" and dataset.window is None:
        add("trainer.dataset.window", "csv-sequence needs the window length",
            "Add window: N (rows per example), e.g. window: 24.")


# Keys of your own code's trials (``trainer.function`` / ``trainer.command``), and the keys of
# the built-in trainer those trials cannot use: your code loads its data and builds its model.
OWN_CODE_KEYS = ("stop_grace", "trial_timeout")
BUILT_IN_KEYS = ("dataset", "data_root", "download", "model", "final_epochs", "repeats", "cv",
                 "precision", "early_stopping", "eval_batch_size", "compile", "threads", "fuse",
                 "data_shares")
# What a command may name besides its space's parameters
COMMAND_FIELDS = ("trial_dir", "trial_number", "resume_epoch", "epochs", "device", "seed")


def _changed(trainer: Any, keys: tuple[str, ...]) -> list[str]:
    """The keys whose value is not the default (a stored spec sets every key)."""
    fields = type(trainer).model_fields
    return [key for key in keys
            if getattr(trainer, key) != fields[key].get_default(call_default_factory=True)]


def _check_own_code(spec: StudySpec, problems: Problems) -> None:
    """A study of your own code: one of function/command, no built-in trainer keys, and a
    command's placeholders name parameters. Metric names are your code's own."""
    import string

    trainer = spec.trainer
    if trainer.function and trainer.command:
        problems.add("trainer.command", "trainer.function and trainer.command are both set",
                     "Keep one: your function, or the command that runs your program.")
    for key in _changed(trainer, BUILT_IN_KEYS):
        if not (key == "fuse" and trainer.fuse == 1):
            problems.add(f"trainer.{key}", f"is a setting of the built-in trainer; "
                         f"trainer.{trainer.kind} trains in your code",
                         f"Remove trainer.{key} (your code handles it).")
    if trainer.command is not None:
        known = [*spec.space, *COMMAND_FIELDS]
        try:
            names = [field for _, field, _, _ in string.Formatter().parse(trainer.command)
                     if field is not None]
        except ValueError as exc:
            problems.add("trainer.command", f"cannot be read ({exc})",
                         "Write parameters as {name}; a literal brace as {{ or }}.")
            names = []
        for name in dict.fromkeys(names):
            if name not in known:
                alias = catalogue.meant(name, "mlp")  # learning_rate -> lr
                problems.add("trainer.command", f"{{{name}}} is not a parameter of the space",
                             did_you_mean(name, known)
                             or (f"Did you mean '{alias}'?" if alias in known else "")
                             or f"Use one of: {', '.join('{' + k + '}' for k in known)}.")
    seen: list[str] = []
    for name, param in spec.space.items():
        for parent, wanted in (param.when or {}).items():
            _check_condition(spec, name, parent, wanted, seen, problems)
        seen.append(name)


_FILE_KINDS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".npz": "tensors", ".pt": "tensors",
               ".pth": "tensors"}


def _as_file(name: str) -> str:
    """The mapping form for a data set that names a file (``dataset: wine.csv``); "" if it
    does not look like one."""
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in _FILE_KINDS and "/" not in name:
        return ""
    kind = _FILE_KINDS.get(suffix, "csv")
    return (f"A file is read through a data set kind: write dataset: {{name: {kind}, path: "
            f"{name}}} (the path relative to the study file).")


def _check_sampler(spec: StudySpec, fail: Any) -> None:
    """Problems only visible once the sampler meets the space and the objectives (whether
    Optuna takes the options is asked in ``engine/preflight``)."""
    if spec.multi_objective and spec.sampler.type in SINGLE_OBJECTIVE_ONLY:
        fail("sampler.type", f"the {spec.sampler.type} sampler searches one objective, and "
             f"this study has {len(spec.objective_names)}", "Use tpe, gp, nsga2 or random.")
        return
    if spec.sampler.type == "grid":
        size = grid_size(spec)
        if size > MAX_GRID_POINTS:
            fail("sampler.type", f"the grid has {size} points, more than {MAX_GRID_POINTS}",
                 "Lower sampler.grid_points, add steps, or use tpe.")
            return
        if spec.sampler.options:
            fail("sampler.options", "a grid search takes no sampler options",
                 "Remove sampler.options; the grid comes from the space and grid_points.")
            return
        for start in ("defaults_first", "center_first"):
            if getattr(spec.sampler, start):
                fail(f"sampler.{start}", "a grid search tries its own points, in order",
                     f"Remove sampler.{start}, or use tpe.")
    for key in spec.sampler.options:
        if key in OWN_KEYS:
            fail(f"sampler.options.{key}", f"'{key}' has its own key",
                 f"Write sampler.{key} instead.")


def _check_objectives(spec: StudySpec, problems: Problems, metrics: dict[str, None]) -> None:
    """Objectives after the first are measures; constraints name a measure or the first
    objective."""
    from tunecli.catalogue import MEASURES

    for i, objective in enumerate(spec.objectives or []):
        if i == 0:
            if objective.metric in MEASURES:
                problems.add("objectives.0.metric", f"the first objective is a measure "
                             f"('{objective.metric}'); it must be a per-epoch metric",
                             "Put the metric first, e.g. {metric: val_accuracy, "
                             "direction: maximize}, then the measures.")
            continue
        if objective.metric not in MEASURES:
            problems.add(f"objectives.{i}.metric", f"unknown measure '{objective.metric}'",
                         did_you_mean(objective.metric, MEASURES)
                         or f"Choose one of: {', '.join(MEASURES)} (only the first "
                            "objective is a per-epoch metric).")
    names = [o.metric for o in spec.objectives] if spec.objectives else [spec.metric]
    seen = set()
    for i, objective_name in enumerate(names):
        if objective_name in seen:
            problems.add(f"objectives.{i}.metric", f"'{objective_name}' is listed twice",
                         "Keep one entry per objective.")
        seen.add(objective_name)
    for i, constraint in enumerate(spec.parsed_constraints()):
        if constraint.name not in MEASURES and constraint.name != spec.metric:
            allowed = [*MEASURES, spec.metric]
            problems.add(f"constraints.{i}", f"unknown name '{constraint.name}' in "
                         f"'{spec.constraints[i]}'",
                         did_you_mean(constraint.name, allowed)
                         or f"Bound one of: {', '.join(allowed)}.")


def _check_space(spec: StudySpec, problems: Problems, builtin: bool) -> None:
    model = spec.trainer.model
    known = catalogue.known_hyperparameters(model) if builtin else None
    seen: list[str] = []
    for name, param in spec.space.items():
        where = f"space.{name}"
        if known is not None and name not in known and not (
                model == "mlp" and catalogue.is_layer_width(name)):
            guess = catalogue.meant(name, model)
            problems.add(where, f"'{name}' is not a hyperparameter of the {model} model or the "
                         "training loop",
                         f"Did you mean '{guess}'?" if guess
                         else f"Known: {', '.join(sorted(known))}.")
        entry = catalogue.hyperparameter(model, name)
        if entry is not None:
            check_values(entry, param, where, problems)
        for parent, wanted in (param.when or {}).items():
            _check_condition(spec, name, parent, wanted, seen, problems)
        seen.append(name)


def check_values(entry: Any, param: ParamSpec, where: str, problems: Problems) -> None:
    """Fixed values, choices and range bounds against the typed table."""
    def fix_for(value: Any) -> str:
        if entry.kind == "choice":
            close = did_you_mean(str(value), entry.choices)
            return close or f"Choose from: {', '.join(entry.choices)}."
        return f"Write {entry.valid()}, e.g. {entry.default}." if entry.default is not None \
            else f"Write {entry.valid()}."

    if param.kind == "value":
        message = entry.problem(param.value)
        if message:
            problems.add(where, message, fix_for(param.value))
    elif param.kind == "choice":
        for value in param.choice or []:
            message = entry.problem(value)
            if message:
                problems.add(where, message, fix_for(value))
                break
    else:
        if entry.kind in ("bool", "choice"):
            problems.add(where, f"{entry.name} is {entry.valid()}, not a {param.kind} range",
                         f"Write choice: [...] with {entry.valid()}.")
            return
        low, high = param.float_ or param.int_  # type: ignore[misc]
        if entry.kind == "int" and param.kind == "float":
            problems.add(where, f"{entry.name} takes whole numbers, not a float range",
                         f"Write int: [{_whole(low)}, {_whole(high)}].")
            return
        for bound in (low, high):
            message = entry.problem(bound)
            if message:
                problems.add(where, f"the range [{low:g}, {high:g}] goes outside what "
                             f"{entry.name} accepts ({entry.valid()})",
                             "Narrow the range.")
                break


def _whole(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(round(value))


def _check_condition(spec: StudySpec, name: str, parent: str, wanted: Any, seen: list[str],
                     problems: Problems) -> None:
    where = f"space.{name}.when.{parent}"
    if parent not in spec.space:
        problems.add(where, f"condition on '{parent}', which is not in the space",
                     did_you_mean(parent, spec.space) or "Declare it first.")
        return
    if parent not in seen:
        problems.add(where, f"'{parent}' must come before '{name}'",
                     f"Move '{parent}' above '{name}' in the space.")
        return
    options = wanted if isinstance(wanted, list) else [wanted]
    parent_spec = spec.space[parent]
    if parent_spec.kind == "choice":
        missing = [o for o in options if o not in parent_spec.choice]  # type: ignore[operator]
        if missing:
            problems.add(where, f"{missing[0]!r} is not one of {parent}'s choices",
                         f"Use one of: {parent_spec.choice}.")
    elif parent_spec.kind == "float":
        problems.add(where, f"'{parent}' is a float range, which almost never equals "
                     f"{options[0]!r}, so '{name}' would never be sampled",
                     f"Condition on a choice (or int) parameter, or make '{parent}' a choice.")
    elif parent_spec.kind == "int":
        low, high = parent_spec.int_  # type: ignore[misc]
        outside = [o for o in options if isinstance(o, bool) or not isinstance(o, int)
                   or not low <= o <= high]
        if outside:
            problems.add(where, f"{outside[0]!r} is not a value '{parent}' can take "
                         f"([{low}, {high}])", "Use whole numbers inside its range.")
    elif parent_spec.value not in options:
        problems.add(where, f"'{parent}' is fixed to {parent_spec.value!r}, so '{name}' would "
                     "never be sampled", f"Drop the condition, or search '{parent}'.")


def warnings(spec: StudySpec) -> list[str]:
    """Things that are allowed but almost always a slip."""
    found = []
    if spec.direction == "minimize" and spec.metric in ACCURACY_LIKE:
        found.append(f"direction is minimize for {spec.metric}, where higher is better; "
                     "write direction: maximize unless you mean to find the worst model")
    if spec.direction == "maximize" and spec.metric.endswith(("_loss", "_mse", "_rmse", "_mae")):
        found.append(f"direction is maximize for {spec.metric}, where lower is better; "
                     "write direction: minimize")
    return found
