"""The group runner: trials of one structure train together as one fused model, refilled as
members leave; and the rules that group a round's trials (``Grouping``).

How K is chosen (``trainer.fuse``): 1 turns fusion off; a number is taken as given; ``auto``
fuses the built-in MLP and CNN where a round's first model is small enough to gain
(measured in ``benchmarks/fused_trials.py``), with K from the device; a user model fuses only
when K is given, through ``torch.func``, once a probe shows ``vmap`` can run it.

Grouping: the round's first fresh trial is sampled freely; the later ones are asked with its
shared settings (depth, batch size, optimizer, activation, batch norm, Nesterov: what one
stacked model must share) fixed through Optuna's ``enqueue_trial``, and the sampler chooses
everything else (learning rate, width, dropout, decay, ...) as usual. Trials that still differ
(a retry that continues its checkpoint, a trial another worker queued, an optimizer that is not
fused) train alone. Every member is a whole Optuna trial: it counts against the budget,
reports each epoch, may be pruned, and is stored as soon as it leaves its group.

Refills: as members leave (pruned, finished, failed), the freed slots go to new trials asked
the same way, which join the stacked model at the epoch boundary; a group takes up to
``REFILLS`` x K trials in all, so later rounds still sample new structures.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from tunecli import attrs

if TYPE_CHECKING:
    from tunecli.engine.search.kit import Finish, Member, Refill, RunnerKit
    from tunecli.engine.search.reporter import TrialReporter
    from tunecli.spec.models import StudySpec

__all__ = ["REFILLS", "FusePlan", "Grouping", "fuse_plan", "run", "with_k"]

# auto, per device kind: K, and the most work per step (weights x batch size, about one
# step's multiply-adds per member) worth fusing. Above it one trial's matrix products already
# keep the device busy, and a fused group is little or no faster than its members one after
# another, while it fixes their structure (benchmarks/README.md, 2 CPU cores: every measured
# configuration up to 3.3M gained 1.9-4.6x, every one from 8.6M on 0.8-1.3x, e.g. a 2 x 128
# Fashion-MNIST MLP at batch 128, 15M: 1.3x). CUDA's limit is a first guess, not yet measured.
# A group is refilled as members leave until it has taken this many times K trials: pruning
# empties a group within a few epochs, and a group of one or two trains barely faster than
# its members alone; the bound keeps a search trying new structures (measured in
# benchmarks/README.md).
REFILLS = 3
_AUTO = {"cpu": (8, 4_000_000), "cuda": (16, 2_500_000_000)}


@dataclass(frozen=True)
class FusePlan:
    """How this run groups trials: up to ``k`` per group; under ``auto`` a round whose first
    configuration does more than ``max_work`` per step (weights x batch size) trains alone."""

    k: int
    max_work: int | None = None
    why_alone: str = ""        # why trials train one at a time, when they all do
    admit: int = 0             # trials one group takes in all, refills included (k > 1 only)
    device: str = "cpu"        # the device kind max_work was measured for


def fuse_plan(spec: StudySpec, device_type: str) -> FusePlan:
    fuse = spec.trainer.fuse
    if spec.trainer.kind != "builtin":
        return FusePlan(1, why_alone=f"your code (trainer.{spec.trainer.kind}) trains each; "
                                     "fused groups are the built-in trainer's")
    if fuse == 1:
        return FusePlan(1)
    from tunecli.trainer.fusable import why_not_fused

    why = why_not_fused(spec.trainer, {})
    if spec.multi_objective or spec.constraints:  # measured and checked per trial, alone
        why = "studies with several objectives or constraints are trained one at a time"
    if spec.sampler.type == "grid":  # a round fixes its members' structure; grid points are set
        why = "the grid sampler is run one trial at a time"
    if why:
        return FusePlan(1, why_alone=why)
    if fuse != "auto":
        return FusePlan(int(fuse), admit=int(fuse) * REFILLS)
    k, max_work = _AUTO.get(device_type, _AUTO["cpu"])
    return FusePlan(k, max_work, admit=k * REFILLS, device=device_type)


def with_k(plan: FusePlan, k: int) -> FusePlan:
    """The plan for one round of ``k`` trials (fewer than K near the failure limit)."""
    return plan if k == plan.k else dataclasses.replace(plan, k=k)


# ---------------------------------------------------------------------------------------------
# Grouping a round's trials


class Grouping:
    """A round's grouping: the anchor (its first fresh trial, whose structure the group takes),
    the settings fixed for later members, and how many trials the group admitted."""

    def __init__(self, kit: RunnerKit, plan: FusePlan, unfusable: Callable[[str], None],
                 too_large: Callable[[str], None]) -> None:
        self.kit, self.plan = kit, plan
        self.unfusable, self.too_large = unfusable, too_large
        self.anchor: dict[str, Any] | None = None
        self.fixed: dict[str, Any] | None = None
        self.admitted = 0
        self.refilling = False           # the anchor's group takes new trials as members leave
        self.later: list[Member] = []    # asked to join the group but of another structure

    def ask_round(self, ask: Callable[[dict[str, Any] | None], Member | None]
                  ) -> tuple[list[Member], list[Member]]:
        """Up to K trials: the first sampled freely, the rest with the anchor's structure;
        and the list that trials a refill asked but could not join will fill."""
        members: list[Member] = []
        k = self.plan.k
        while len(members) < k:
            member = ask(self.fixed if members else None)
            if member is None:
                break
            members.append(member)
            if self.plan.k > 1 and self.anchor is None and not self._anchored(*member):
                k = len(members)  # it trains alone: the round ends with it
        self.admitted = sum(1 for member in members if self._joins(member))
        return members, self.later

    def split(self, members: list[Member]) -> list[list[Member]]:
        """Members of one structure together; retries and unfusable ones alone."""
        if self.plan.k == 1:
            return [[member] for member in members]
        groups: dict[Any, list[Member]] = {}
        alone = []
        for trial, params in members:
            key = self._group_of(trial, params)
            if key is None:
                alone.append([(trial, params)])
            else:
                groups.setdefault(key, []).append((trial, params))
        return [*groups.values(), *alone]

    def leads(self, members: list[Member]) -> bool:
        """Whether these members are the anchor's group, which refills take in."""
        return self.refilling and any(params is self.anchor for _, params in members)

    def refill(self, free: int, room: Callable[[int], float],
               ask: Callable[[dict[str, Any] | None], Member | None]) -> list[Member]:
        """Trials to join the anchor's group in ``free`` slots at an epoch boundary;
        ``room(in_flight)``: how many more may start (the time and failure limits)."""
        joining: list[Member] = []
        free = int(min(free, self.plan.admit - self.admitted, room(self.plan.k - free)))
        while len(joining) < free and not self.kit.signals.requested and not self.later:
            member = ask(self.fixed)
            if member is None:
                break
            if self._joins(member):
                joining.append(member)
                self.admitted += 1
            else:
                self.later.append(member)
        return joining

    def _anchored(self, trial: optuna.Trial, params: dict[str, Any]) -> bool:
        """Make ``trial`` the anchor if it can lead a group; False: the round stops growing
        (a user model torch.func cannot run, or a model too large to gain)."""
        from tunecli.trainer.fusable import (
            round_fixes,
            why_not_functional,
            why_not_fused,
            work_per_example,
        )

        spec, data_root = self.kit.spec, self.kit.data_root
        if not self._fresh(trial) or why_not_fused(spec.trainer, params) is not None:
            return True  # not an anchor; the next asked trial may be
        problem = why_not_functional(spec.trainer, params, spec.base_dir, data_root)
        if problem is not None:
            self.unfusable(problem)
            return False
        self.anchor = params
        self.fixed = {name: params[name] for name in params
                      if round_fixes(spec.trainer.model, name)}
        self.refilling = True
        if self.plan.max_work is None:
            return True
        work = work_per_example(spec.trainer, params, spec.base_dir, data_root) \
            * _batch_size(spec, params)
        if work <= self.plan.max_work:
            return True
        self.refilling = False  # too much work to gain: this round trains it alone
        self.too_large(f"trial {trial.number} trains alone: its model does {_millions(work)} "
                       f"multiply-adds a step (weights x batch size), past the "
                       f"{_millions(self.plan.max_work)} up to which fused groups train faster "
                       f"on {'the CPU' if self.plan.device == 'cpu' else self.plan.device.upper()}"
                       " (--fuse K fuses such trials anyway)")
        return False

    def _joins(self, member: Member) -> bool:
        """Whether a trial asked for a refill can join the anchor's group."""
        if self.anchor is None:  # no group (one at a time; your own code): torch not needed
            return False
        from tunecli.trainer.fusable import group_key

        key = self._group_of(*member)
        return key is not None and key == group_key(self.kit.spec.trainer, self.anchor)

    def _group_of(self, trial: optuna.Trial, params: dict[str, Any]) -> Any:
        """The group ``trial`` can train in (``group_key``), or None: it trains alone (a retry
        that continues its checkpoint, or a configuration that is not fused)."""
        from tunecli.trainer.fusable import group_key, why_not_functional, why_not_fused

        spec = self.kit.spec
        if not self._fresh(trial) or why_not_fused(spec.trainer, params) \
                or why_not_functional(spec.trainer, params, spec.base_dir, self.kit.data_root):
            return None
        return group_key(spec.trainer, params)

    def _fresh(self, trial: optuna.Trial) -> bool:
        """Not a retry that continues a checkpoint (those train alone, from where they were)."""
        path = self.kit.checkpoint_for(trial)
        return path is None or not path.exists()


def _millions(count: int) -> str:
    return f"{count / 1e6:.0f}M" if count >= 10_000_000 else f"{count / 1e6:.1f}M"


def _batch_size(spec: StudySpec, params: dict[str, Any]) -> int:
    from tunecli.trainer.models import full_config

    return max(1, int(full_config(spec.trainer.model, params)["batch_size"]))


# ---------------------------------------------------------------------------------------------
# Training a group


def run(kit: RunnerKit, members: list[Member], finish: Finish, refill: Refill | None = None,
        slots: int | None = None) -> None:
    """Train trials of one structure together as one fused model (``trainer.group_loop``).

    Each member is a whole trial: it reports every epoch and may be pruned; ``finish`` is
    called for it as soon as it leaves the group, so it is stored while the rest go on.
    ``refill(free)`` gives trials to join the group as members leave (up to ``slots`` at a
    time). Each member records the group (``fused_group``: its first trial) and the trials
    it trained alongside (``fused_with``).
    """
    from tunecli import trainer  # torch: imported once a trial trains

    group = _Group(members[0][0].number)

    def join(joining: list[Member]) -> list[Any]:
        group.join([trial.number for trial, _ in joining])
        jobs = [_member_job(kit, group, trial, params, finish) for trial, params in joining]
        group.relabel()
        return jobs

    jobs = join(members)
    spec = kit.spec
    with kit.signals.interruptible():
        trainer.train_group(spec.trainer, jobs, metric=spec.metric, direction=spec.direction,
                          base_dir=spec.base_dir, data_root=kit.data_root,
                          refill=(lambda free: join(refill(free))) if refill else None,
                          slots=slots)


def _member_job(kit: RunnerKit, group: _Group, trial: optuna.Trial, params: dict[str, Any],
                finish: Finish) -> Any:
    from tunecli.trainer.group_loop import MemberJob

    trial.set_user_attr(attrs.FUSED_GROUP, group.first)
    trial.set_user_attr(attrs.FUSED_WITH, sorted(group.met[trial.number]))
    reporter = kit.reporter(trial)
    group.reporters[trial.number] = reporter
    return MemberJob(params, reporter, kit.checkpoint_for(trial),
                     stop_after=kit.epoch_claims.get(trial.number),
                     on_end=functools.partial(_member_ended, kit, trial, reporter, group,
                                              finish))


def _member_ended(kit: RunnerKit, trial: optuna.Trial, reporter: TrialReporter, group: _Group,
                  finish: Finish, ended: Any) -> None:
    group.leave(trial.number)
    if reporter.history:
        trial.set_user_attr(attrs.HISTORY, reporter.history)
    fused_with = sorted(group.met[trial.number])
    if fused_with != trial.user_attrs.get(attrs.FUSED_WITH):
        trial.set_user_attr(attrs.FUSED_WITH, fused_with)
    if isinstance(ended, BaseException):
        finish(trial, ended)
    else:
        kit.store_result(trial, ended)
        finish(trial, float(ended.value))


class _Group:
    """Who trains in one fused group now, and whom each member has trained alongside."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.present: list[int] = []
        self.met: dict[int, set[int]] = {}
        self.reporters: dict[int, TrialReporter] = {}

    def join(self, numbers: list[int]) -> None:
        if numbers and not self.present:  # all left: the newcomers train as a group anew
            self.first = numbers[0]
        for number in self.present:
            self.met[number].update(numbers)
        for number in numbers:
            self.met[number] = {*self.present, *numbers} - {number}
        self.present += numbers

    def leave(self, number: int) -> None:
        self.present.remove(number)
        self.relabel()

    def relabel(self) -> None:
        """The progress line's name for the group: "trials 8-15 fused x8"."""
        if self.present:
            label = f"trials {min(self.present)}-{max(self.present)} fused x{len(self.present)}"
            for number in self.present:
                self.reporters[number].label = label
