"""The search engine: from a validated spec to stored trials, in four rooms.

- ``search``: the one trial driver (``driver``: ask, ``budget``, runner, ``outcome``, tell) and
  its ``runners`` (the contract; ``lone``, ``group``), the one ``reporter`` and the ``kit`` a
  runner is given; ``studies`` (create, continue, load), ``preflight``, ``choice`` (what
  ``tunecli train`` trains), ``signals`` (Ctrl-C, SIGTERM)
- ``strategy``: what a trial tries and when it stops: ``space``, ``samplers``,
  ``hyperopt_sampler``, ``pruners``, ``objectives`` (several objectives, the front),
  ``grid_queue``, ``enqueue``
- ``store``: ``storage`` (URLs, the embedded default, reconnecting), ``proxy`` (``serve``),
  ``recovery`` (lost trials, the trial counts), ``optuna_internals`` (the one reach past
  Optuna's public API)
- ``cluster``: local ``workers`` and the ``launch`` files; ``tracking``: TensorBoard and W&B

``search`` imports ``strategy`` and ``store``, ``strategy`` imports ``store``
(``tests/test_layers.py``). The live view is the face's (``reports.live``), fed through the
driver's ``LiveView``.
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
