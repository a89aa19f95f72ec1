"""Studies as functions: what ``search``, ``resume``, ``list``, ``train`` and ``dashboard`` do
before they print (see ``tunecli.api``)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunecli import attrs
from tunecli.api.running import Opened
from tunecli.errors import SpecError, did_you_mean

if TYPE_CHECKING:
    import optuna

    from tunecli.spec.models import StudySpec

__all__ = ["Opened", "Served", "best_trial", "budget_met", "choose_for_training", "dashboard",
           "list_studies", "open_for_resume", "open_for_search", "pareto_front", "search",
           "url_of", "wait_for_study"]


def open_for_search(study_file: Path, overrides: dict[str, Any],
                    origins: dict[str, str] | None = None, *, storage: str | None = None,
                    data_root: str | None = None, fork: bool = False,
                    enqueue: Path | None = None, warm_from: str | None = None,
                    from_top: int = 5) -> Opened:
    """``tunecli search``'s every check, then the study created or continued: the file with
    its overrides, the data and model (preflight), ``--fork``, the configurations to run first
    (``--enqueue`` and ``--from``, checked before anything is stored)."""
    from tunecli import spec as spec_module
    from tunecli.engine.store.storage import resolve_url

    spec = spec_module.load(study_file, overrides, origins)
    try:
        return _opened_for_search(spec, study_file, resolve_url(storage, spec.storage),
                                  data_root, fork, enqueue, warm_from, from_top)
    except SpecError as exc:
        raise _storage_blamed(exc, storage, str(study_file)) from None


def _storage_blamed(exc: SpecError, option: str | None, study_file: str) -> SpecError:
    """A storage problem blamed where the URL came from: --storage, TUNECLI_STORAGE, or the
    study file's ``storage:`` key (the storage module cannot tell which it was given)."""
    import os

    from tunecli.engine.store.storage import ENV_VAR

    if exc.source != "--storage" or option is not None:
        return exc
    if os.environ.get(ENV_VAR):
        return SpecError(exc.message, source=ENV_VAR, fix=exc.fix)
    return SpecError(exc.message, source=study_file, path="storage", fix=exc.fix)


def _opened_for_search(spec: StudySpec, study_file: Path, url: str, data_root: str | None,
                       fork: bool, enqueue: Path | None, warm_from: str | None,
                       from_top: int) -> Opened:
    from tunecli.engine.search import preflight
    from tunecli.engine.search import studies as study_module
    from tunecli.spec import checks

    preflight.preflight(spec, data_root, str(study_file))
    warnings, notes = checks.warnings(spec), list[str]()
    spec = study_module.with_resolved_data_root(spec, data_root)
    if fork:
        spec = _forked(spec, url, notes)
    configs, sources = _known_first(spec, url, enqueue, warm_from, from_top)
    study = study_module.open_for_search(spec, url, str(study_file), known_first=bool(configs))
    if configs:
        from tunecli.engine.strategy.enqueue import enqueue as enqueue_configs

        queued = enqueue_configs(study, configs)
        notes.append(f"queued {queued} of {len(configs)} configurations from "
                     f"{' and '.join(sources)} to run first")
    return Opened(study, spec, url, warnings, notes)


def open_for_resume(name: str, overrides: dict[str, Any],
                    origins: dict[str, str] | None = None, *, storage: str | None = None,
                    data_root: str | None = None) -> Opened:
    """``tunecli resume``: the stored study and its spec with this run's overrides; a new
    ``budget.n_trials`` becomes the study's own from now on. Preflight as for a search."""
    from tunecli.engine.search import preflight
    from tunecli.engine.search import studies as study_module
    from tunecli.engine.store.storage import resolve_url

    url = resolve_url(storage)
    study, spec = study_module.load(name, url, overrides=overrides, origins=origins)
    if "budget.n_trials" in overrides:
        stored = study_module.stored_spec(study) or spec.stored()
        stored["budget"] = {**stored["budget"], "n_trials": spec.budget.n_trials}
        study_module.store_spec(study, stored)
    preflight.preflight(spec, data_root, f"study '{name}'")
    return Opened(study, spec, url)


def _known_first(spec: StudySpec, url: str, enqueue: Path | None, warm_from: str | None,
                 from_top: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The configurations to run first, and where they came from."""
    configs: list[dict[str, Any]] = []
    sources = []
    if enqueue is not None:
        from tunecli.engine.strategy.enqueue import read_configurations

        configs += read_configurations(enqueue, spec)
        sources.append(str(enqueue))
    if warm_from is not None:
        configs += _top_of(warm_from, url, spec, from_top)
        sources.append(f"study '{warm_from}'")
    return configs, sources


def _top_of(name: str, url: str, spec: StudySpec, k: int) -> list[dict[str, Any]]:
    """``--from NAME``: that study's best configurations (checked before anything is stored)."""
    import optuna

    from tunecli.engine.search import studies as study_module
    from tunecli.engine.store.storage import describe, open_storage
    from tunecli.engine.strategy.enqueue import top_configurations

    if name == spec.name:
        raise SpecError(f"--from names this study ('{name}')", source="--from",
                        fix="Give another study, or resume this one: tunecli resume NAME.")
    storage = open_storage(url, heartbeat=False)
    names = study_module.study_names(storage)
    if name not in names:
        raise SpecError(f"no study '{name}' in {describe(url)}", source="--from",
                        fix=did_you_mean(name, names) or "List them with: tunecli list.")
    return top_configurations(optuna.load_study(study_name=name, storage=storage), name, spec, k)


def _forked(spec: StudySpec, url: str, notes: list[str]) -> StudySpec:
    """``--fork``: the first free NAME-k whose stored spec matches, or a new one."""
    import optuna

    from tunecli import spec as spec_module
    from tunecli.engine.search import studies as study_module
    from tunecli.engine.store.storage import open_storage

    names = set(study_module.study_names(open_storage(url, heartbeat=False)))
    candidate, k = spec.name, 1
    while candidate in names:
        stored = study_module.stored_spec(optuna.load_study(study_name=candidate,
                                                            storage=open_storage(url)))
        if stored and not spec_module.objective_diff(stored, spec.stored()):
            break
        k += 1
        candidate = f"{spec.name}-{k}"
    if candidate != spec.name:
        notes.append(f"The spec differs from the stored study '{spec.name}': running it as "
                     f"'{candidate}'.")
    return spec.model_copy(update={"name": candidate})


def list_studies(storage: str | None = None) -> tuple[str, list[dict[str, str]] | None]:
    """``tunecli list``: the storage as the user would name it, and a row per study (name,
    metric, direction, finished, failed, budget, best value, started); None where no storage
    file is (``list`` never creates one)."""
    import optuna

    from tunecli.engine.search import studies as study_module
    from tunecli.engine.store.recovery import count_trials
    from tunecli.engine.store.storage import describe, open_existing, resolve_url

    url = resolve_url(storage)
    opened = open_existing(url)
    if opened is None:
        return describe(url), None
    rows = []
    for s in optuna.get_all_study_summaries(opened, include_best_trial=True):
        study = optuna.load_study(study_name=s.study_name, storage=opened)
        counts = count_trials(study.get_trials(deepcopy=False))
        budget = (study_module.stored_spec(study) or {}).get("budget") or {}
        if len(s.directions) > 1:  # several objectives: the front's size, not one value
            front = len(study.best_trials)
            best_text = f"front of {front}" if front else "-"
        else:
            best = s.best_trial.value if s.best_trial is not None else None
            best_text = "-" if best is None else f"{best:.4g}"
        spec = study_module.stored_spec(study) or {}
        rows.append({
            "name": s.study_name,
            "metric": ", ".join(o["metric"] for o in spec.get("objectives") or [])
            or str(s.user_attrs.get(attrs.STUDY_METRIC, spec.get("metric", "-"))),
            "direction": ("/".join(d.name.lower()[:3] for d in s.directions)
                          if len(s.directions) > 1 else s.directions[0].name.lower()),
            "finished": str(counts["finished"]), "failed": str(counts["failed"]),
            "budget": (str(budget["n_trials"]) if budget.get("n_trials")
                       else f"{budget['epochs']} epochs" if budget.get("epochs") else "-"),
            "best value": best_text,
            "started": (s.datetime_start.strftime("%Y-%m-%d %H:%M") if s.datetime_start
                        else "-")})
    return describe(url), rows


def choose_for_training(source: str, *, storage: str | None = None, trial: int | None = None,
                        pick: str | None = None, epochs: int | None = None) -> Any:
    """``tunecli train SOURCE``: a study file fixed to one configuration, or a stored study's
    best trial, trial ``trial``, or the front's ``pick`` (a ``trainer.final.Choice``)."""
    from tunecli.engine.search import choice
    from tunecli.engine.store.storage import resolve_url

    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():  # a folder: a study's name
        if trial is not None or pick is not None:
            option = "--trial" if trial is not None else "--pick"
            raise SpecError(f"{option} picks a trial of a stored study, not of a file",
                            source=option, fix=f"Run tunecli train STUDY_NAME {option} "
                                               "..., or drop it.")
        return _built_in(choice.from_file(path, epochs))
    if trial is not None and pick is not None:
        raise SpecError("--trial and --pick both choose the trial", source="--pick",
                        fix="Keep one of them.")
    return _built_in(choice.from_study(source, resolve_url(storage), trial, epochs, pick))


def _built_in(chosen: Any) -> Any:
    """``tunecli train`` retrains with the built-in trainer; your own code trains itself."""
    trainer = chosen.spec.trainer
    if trainer.kind != "builtin":
        params = " ".join(f"{k}={v}" for k, v in chosen.params.items())
        raise SpecError(f"{chosen.source} is trained by trainer.{trainer.kind}, which tunecli "
                        "train cannot retrain", source="SOURCE",
                        fix=f"Train it with your code and these parameters: {params}.")
    return chosen


# ---------------------------------------------------------------------------------------------
# The whole path, for notebooks and scripts


def search(study_file: str | Path, *, n_trials: int | None = None, timeout: str | None = None,
           name: str | None = None, seed: int | None = None, storage: str | None = None,
           data_root: str | None = None, overrides: dict[str, Any] | None = None,
           progress: bool = True) -> optuna.Study:
    """``tunecli search STUDY_FILE``: run the study to its budget and return it (an Optuna
    study, in the same storage the CLI would use). ``overrides``: dotted keys as ``--set``
    takes them (``{"trainer.epochs": 5}``); the named options win over them. ``progress``:
    show the live view (in a notebook too)."""
    from rich.console import Console

    options = {"budget.n_trials": n_trials, "budget.timeout": timeout, "name": name,
               "sampler.seed": seed}
    changes = {**(overrides or {}), **{k: v for k, v in options.items() if v is not None}}
    opened = open_for_search(Path(study_file), changes, storage=storage, data_root=data_root)
    from tunecli.api.running import run_here

    run_here(opened, Console(quiet=not progress), data_root=data_root)
    _OPENED_AT[opened.study] = opened.url
    return opened.study


# The storage each study ``search`` returned lives in (an Optuna study does not say).
_OPENED_AT: weakref.WeakKeyDictionary[optuna.Study, str] = weakref.WeakKeyDictionary()


def url_of(study: optuna.Study) -> str | None:
    """The storage URL of a study ``search`` returned (None for another)."""
    return _OPENED_AT.get(study)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best completed trial (the first objective's, for several), or None."""
    from tunecli.engine.strategy.objectives import best_trial as best

    return best(study)


def pareto_front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The completed trials no other trial beats on every objective."""
    from tunecli.engine.strategy.objectives import pareto_front as front

    return front(study)


@dataclass
class Served:
    """A dashboard bound to its address (``server.serve_forever()`` serves it)."""

    server: Any
    address: str
    where: str


def dashboard(storage: str | None = None, host: str = "127.0.0.1", port: int = 8080,
              study: str | None = None) -> Served:
    """``tunecli dashboard``: optuna-dashboard bound to ``host:port`` over the storage (an
    existing one: it never creates one), with the study's page as the address when named."""
    from tunecli.engine.search import studies as study_module
    from tunecli.engine.store.storage import describe, local_file, open_storage, resolve_url
    from tunecli.reports.dashboard import serve

    url = resolve_url(storage)
    path = local_file(url)
    if path is not None and not path.is_file():
        raise SpecError(f"there is no storage at {describe(url)}", source="--storage",
                        fix="Run a search first, or name the storage with --storage.")
    opened = open_storage(url, heartbeat=False, create=False)
    page = "/dashboard"
    if study is not None:
        names = study_module.study_names(opened)
        if study not in names:
            raise SpecError(f"no study '{study}' in {describe(url)}", source="STUDY",
                            fix=did_you_mean(study, names) or "List them: tunecli list.")
        page += f"/studies/{opened.get_study_id_from_name(study)}"
    server = serve(opened, host, port)
    shown = f"[{host}]" if ":" in host else host
    return Served(server, f"http://{shown}:{server.server_port}{page}", describe(url))


def wait_for_study(name: str, storage: str | None, seconds: float,
                   waiting: Any = None) -> str:
    """The storage URL once it holds study ``name``: a storage that is not there yet (a file,
    a server starting) or lacks the study is asked again every 2 s, up to ``seconds``;
    ``waiting(seconds_left, why)`` is told each time. A SpecError says why it gave up."""
    import time

    from tunecli.engine.store.storage import describe, open_storage, require_grpc, resolve_url

    url = resolve_url(storage)
    if url.startswith("grpc://"):  # a missing package is not worth waiting for
        require_grpc(url, "--storage")
    deadline = time.monotonic() + seconds
    while True:
        try:
            why = _not_ready(name, open_storage(url, heartbeat=False, create=False))
            if why is None:
                return url
            why += f" in {describe(url)}"
        except SpecError as exc:
            why = exc.message
        left = deadline - time.monotonic()
        if left <= 0:
            raise SpecError(f"{why} after waiting {seconds:.0f} s", source="--wait",
                            fix="Start the study (tunecli search FILE --storage URL), or wait "
                                "longer with --wait.")
        if waiting is not None:
            waiting(left, why)
        time.sleep(min(2.0, left))


def _not_ready(name: str, storage: Any) -> str | None:
    """Why a worker cannot join study ``name`` yet, or None: the study must exist and hold its
    spec (``search`` creates the study, then stores the spec: a moment apart)."""
    import optuna

    from tunecli.engine.search import studies as study_module

    names = study_module.study_names(storage)
    if name not in names:
        close = did_you_mean(name, names)
        return f"no study '{name}' yet" + (f" ({close})" if close else "")
    if study_module.stored_spec(optuna.load_study(study_name=name, storage=storage)) is None:
        return f"study '{name}' is being created"
    return None


def budget_met(opened: Opened) -> bool:
    """Whether the study needs no more trials (its budget of finished trials, or its grid)."""
    from tunecli.engine.store.recovery import count_trials
    from tunecli.engine.strategy.grid_queue import grid_exhausted

    finished = count_trials(opened.study.get_trials(deepcopy=False))["finished"]
    n_trials = opened.spec.budget.n_trials
    return grid_exhausted(opened.study) or (n_trials is not None and finished >= n_trials)
