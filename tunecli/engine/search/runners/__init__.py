"""Runners: what trains the trials the driver asked. Adding a kind of trial is one module
here and one entry in ``RUNNERS``.

The contract. A runner is called as ``runner(kit, members, finish, refill, slots)``:

- given: ``kit`` (``search.kit.RunnerKit``: the spec, ``kit.reporter(trial)``,
  ``kit.checkpoint_for(trial)``, ``kit.epoch_claims``, ``kit.signals``, ``kit.data_root``),
  ``members``, the trials to train with their sampled parameters, each already counted in
  the budget; ``refill(free)``, where not None, gives more trials to train alongside as
  members leave (up to ``slots`` at a time);
- reports: every epoch of a trial through ``kit.reporter(trial).report(epoch, metrics)``,
  and lets what ``report`` raises (a prune, the time limit's cut) end that trial;
- ends: calls ``finish(trial, ended)`` once per trial, as soon as it ends, with its value(s)
  or the exception that ended it (``outcome`` turns either into the stored state). An
  exception that leaves the runner ends its unfinished trials the same way; bad input
  (``SpecError``) and signals stop the search too. A runner trains inside
  ``kit.signals.interruptible()`` so Ctrl-C stops it at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunecli.engine.search.kit import (
    Finish,
    Member,
    Refill,
    Runner,
    RunnerKit,
    one_by_one,
    own_code_device,
)
from tunecli.engine.search.runners import command, function, group, lone

if TYPE_CHECKING:
    from tunecli.spec.models import StudySpec

__all__ = ["RUNNERS", "Finish", "Member", "Refill", "Runner", "device_type", "one_at_a_time",
           "plan_lines", "runner_for"]

RUNNERS: dict[str, Runner] = {
    "lone": one_by_one(lone.train),          # the built-in trainer, one trial at a time
    "group": group.run,                      # the built-in trainer, one structure fused
    "function": one_by_one(function.train),  # your training function (trainer.function)
    "command": one_by_one(command.train),    # any program (trainer.command), a process each
}


def runner_for(kit: RunnerKit, members: list[Member], refilled: bool) -> Runner:
    """The runner of these members: your code's kind, else a fused group for several (or one a
    refill may join), else the lone built-in trial."""
    kind = kit.spec.trainer.kind
    if kind != "builtin":
        return RUNNERS[kind]
    return RUNNERS["group" if len(members) > 1 or refilled else "lone"]


def device_type(spec: StudySpec) -> str:
    """The kind of device trials train on (your own code's told without importing torch)."""
    if spec.trainer.kind != "builtin":
        return own_code_device(spec.trainer.device).split(":")[0]
    from tunecli.trainer.loop import resolve_device  # torch: imported once a search runs

    return resolve_device(spec.trainer.device).type


def one_at_a_time(why: str) -> str:
    return f"trials train one at a time: {why}"


def plan_lines(spec: StudySpec, plan: group.FusePlan, startup: int) -> list[str]:
    """What the run says before its first trial: CPU threads, and how trials are grouped."""
    lines = []
    if spec.trainer.kind == "builtin" and device_type(spec) == "cpu":
        from tunecli.trainer import threads

        lines.append(threads.describe(spec.trainer.threads))
    if plan.why_alone:
        lines.append(one_at_a_time(plan.why_alone))
    elif plan.k > 1:
        lines.append(f"fused trials: up to {plan.k} configurations train together as one "
                     "batched model" + (f" after the sampler's {startup} startup trials"
                                        if startup else "") + " (--fuse 1 turns it off)")
    return lines
