"""Hyperopt's TPE as an Optuna sampler.

Each new trial asks ``hyperopt.tpe.suggest`` for one point, with the study's finished trials
(complete, and pruned at their last reported value) handed over as hyperopt's history. So the
study stays an ordinary Optuna study: pruning, resume, several workers and the Optuna tools all
work as with any other sampler.

Conditional parameters are given to hyperopt as a flat space; each past trial lists only the
parameters it used, which is how hyperopt's own conditional spaces record observations, so
every parameter's density is fitted on the trials where it was active.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from tunecli.spec.models import ParamSpec  # types only: the spec imports the registries


__all__ = ["HyperoptTPESampler"]


class HyperoptTPESampler(BaseSampler):
    """Suggests with hyperopt's TPE from the study's own history.

    Example::

        sampler = HyperoptTPESampler(spec.space, seed=0, n_startup_trials=10)
        study = optuna.create_study(sampler=sampler)
    """

    def __init__(self, space: Mapping[str, ParamSpec], seed: int | None = None,
                 n_startup_trials: int = 10) -> None:
        self._space = {k: p for k, p in space.items() if p.kind != "value"}
        self._rng = np.random.default_rng(seed)
        self._n_startup_trials = n_startup_trials
        self._fallback = RandomSampler(seed=seed)
        self._points: dict[int, dict[str, Any]] = {}
        logging.getLogger("hyperopt").setLevel(logging.WARNING)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    # Points are kept by trial number: unique within the study, and public.
    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._points[trial.number] = self._next_point(study)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._points.pop(trial.number, None)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        point = self._points.get(trial.number, {})
        if param_name not in point or param_name not in self._space:
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        return self._from_hyperopt(self._space[param_name], point[param_name])

    # -- hyperopt's side ---------------------------------------------------------------------

    def _expressions(self) -> dict[str, Any]:
        from hyperopt import hp

        exprs: dict[str, Any] = {}
        for name, p in self._space.items():
            if p.kind == "choice":
                exprs[name] = hp.choice(name, list(range(len(p.choice or []))))
                continue
            low, high = p.float_ or p.int_  # type: ignore[misc]
            if p.log:
                exprs[name] = hp.loguniform(name, math.log(low), math.log(high))
            elif p.step or p.kind == "int":
                # hyperopt rounds to multiples of q, so sample the offset from low (grid point
                # k is k*q), widened by half a step so the end points are as likely as the rest.
                q = p.step or 1
                span = _grid_high(p) - low
                exprs[name] = hp.quniform(name, -q / 2, span + q / 2, q)
            else:
                exprs[name] = hp.uniform(name, low, high)
        return exprs

    def _next_point(self, study: optuna.Study) -> dict[str, Any]:
        from hyperopt import JOB_STATE_DONE, STATUS_OK, Domain, Trials, tpe

        exprs = self._expressions()
        domain = Domain(lambda _: 0.0, exprs)
        history = Trials()
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        tid = 0
        for trial in study.get_trials(deepcopy=False,
                                      states=(TrialState.COMPLETE, TrialState.PRUNED)):
            value = trial.value if trial.state == TrialState.COMPLETE else (
                trial.intermediate_values[max(trial.intermediate_values)]
                if trial.intermediate_values else None)
            if value is None or not math.isfinite(value):
                continue
            idxs = {n: ([tid] if n in trial.params else []) for n in exprs}
            vals = {n: ([self._to_hyperopt(self._space[n], trial.params[n])]
                        if n in trial.params else []) for n in exprs}
            docs = history.new_trial_docs(
                [tid], [None], [{"status": STATUS_OK, "loss": sign * value}],
                [{"tid": tid, "cmd": domain.cmd, "workdir": None, "idxs": idxs, "vals": vals}])
            docs[0]["state"] = JOB_STATE_DONE
            history.insert_trial_docs(docs)
            tid += 1
        history.refresh()
        seed = int(self._rng.integers(2**31 - 1))
        new = tpe.suggest([tid], domain, history, seed, n_startup_jobs=self._n_startup_trials,
                          verbose=False)
        vals = new[0]["misc"]["vals"]
        return {name: v[0] for name, v in vals.items() if v}

    @staticmethod
    def _to_hyperopt(p: ParamSpec, value: Any) -> Any:
        if p.kind == "choice":
            return (p.choice or []).index(value) if value in (p.choice or []) else 0
        if _quantised(p):
            return float(value) - (p.float_ or p.int_)[0]  # type: ignore[index]
        return float(value)

    @staticmethod
    def _from_hyperopt(p: ParamSpec, raw: Any) -> Any:
        if p.kind == "choice":
            return (p.choice or [])[int(raw)]
        low, high = p.float_ or p.int_  # type: ignore[misc]
        if _quantised(p):
            q = p.step or 1
            k = min(max(round(float(raw) / q), 0), round((_grid_high(p) - low) / q))
            value = low + k * q  # exactly on Optuna's grid: low + k * step
            return int(value) if p.kind == "int" else round(float(value), 12)
        value = min(max(float(raw), low), high)
        return int(round(value)) if p.kind == "int" else value


def _quantised(p: ParamSpec) -> bool:
    return not p.log and (p.step is not None or p.kind == "int")


def _grid_high(p: ParamSpec) -> float:
    """The largest grid point ``low + k * step`` not above high (Optuna lowers high so)."""
    low, high = p.float_ or p.int_  # type: ignore[misc]
    q = p.step or 1
    return low + math.floor((high - low) / q + 1e-9) * q
