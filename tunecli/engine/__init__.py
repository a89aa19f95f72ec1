"""The search engine: from a validated spec to stored trials.

- ``study``: create or continue a study (spec, folder and data root stored with it); load one
- ``run``: the run loop: trials to the budget or the timeout, signals, checkpoint tidying
- ``objective``: one trial: claim a slot, sample, train, report each epoch
- ``space``: ``space:`` entries -> ``trial.suggest_*``
- ``samplers``: name -> sampler / pruner (the registries); per-process seeds
- ``hyperopt_sampler``: Hyperopt's TPE as an Optuna sampler
- ``storage``: URLs, the embedded default, SQLite settings
- ``recovery``: lost trials retried; the one definition of trial counts
- ``signals``: Ctrl-C / SIGTERM
- ``workers``: local worker processes
- ``progress``: the live view (rich), laid out for the terminal's width
- ``tracking``: optional TensorBoard and W&B runs, guarded
- ``outcome``: how a trial ended (complete, pruned, failed, lost): the one policy
- ``fusing``: fused rounds (``FusedRound``); ``compute``: ``budget.epochs``
- ``objectives``: several objectives, constraints, the front, ``--pick``
- ``preflight``: what ``search`` checks before its first trial (Optuna, data, model, device)
- ``choice``: what ``tunecli train`` trains
- ``optuna_internals``: the one reach past Optuna's public API
"""

from __future__ import annotations

from tunecli.lazy import lazy_getattr

# name -> the module that defines it, imported on first use (see tunecli.lazy)
_EXPORTS = {
    "open_for_search": "tunecli.engine.search.studies",
    "load": "tunecli.engine.search.studies",
    "SPEC_ATTR": "tunecli.engine.search.studies",
    "best_trial": "tunecli.engine.strategy.objectives",
    "study_names": "tunecli.engine.search.studies",
    "with_resolved_data_root": "tunecli.engine.search.studies",
    "run_search": "tunecli.engine.search.driver",
    "SearchOutcome": "tunecli.engine.search.driver",
    "count_trials": "tunecli.engine.store.recovery",
    "reap_lost_trials": "tunecli.engine.store.recovery",
    "SAMPLER_FACTORIES": "tunecli.engine.strategy.samplers",
    "PRUNER_FACTORIES": "tunecli.engine.strategy.pruners",
    "make_sampler": "tunecli.engine.strategy.samplers",
    "make_pruner": "tunecli.engine.strategy.pruners",
    "resolve_url": "tunecli.engine.store.storage",
    "open_storage": "tunecli.engine.store.storage",
    "DEFAULT_URL": "tunecli.engine.store.storage",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
