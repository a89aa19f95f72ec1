"""Where a search's time goes: training against Optuna's storage, sampler and pruner calls.

Runs ``tunecli search`` in this process with timers around the storage's reads and writes, the
TPE sampler, the successive-halving pruner and the trainer (lone runs, fused epochs), then
prints each one's calls and seconds. Timers nest (a sampler call includes its storage reads), so
the rows do not add up to the total; each row is what removing that call would save.

    .venv/bin/python benchmarks/search_overhead.py                       # digits, fused auto
    .venv/bin/python benchmarks/search_overhead.py --fuse 1 --seed 2     # one trial at a time

Why: on a 2-core CPU a digits trial trains in a few hundred milliseconds, and a fused member in
tens, so Optuna's own per-trial cost decides how much faster fused trials make a search.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

totals: collections.Counter[str] = collections.Counter()
calls: collections.Counter[str] = collections.Counter()


def timed(owner: Any, name: str, label: str | None = None) -> None:
    """Wrap ``owner.name`` to add its calls and seconds under ``label``."""
    original = getattr(owner, name)
    key = label or name

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - started
            calls[key] += 1

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, nargs="?", default=ROOT / "studies" / "digits.yaml")
    parser.add_argument("--fuse", default="auto")
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()

    from optuna.pruners import SuccessiveHalvingPruner
    from optuna.samplers import TPESampler
    from optuna.storages import _cached_storage

    from tunecli.cli.app import main as tunecli_main
    from tunecli.trainer import group_loop, loop

    for name in ("get_all_trials", "get_trial", "create_new_trial", "set_trial_param",
                 "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
                 "set_trial_state_values"):
        timed(_cached_storage._CachedStorage, name, f"storage.{name}")
    for name in ("infer_relative_search_space", "sample_relative", "sample_independent"):
        timed(TPESampler, name, f"tpe.{name}")
    timed(SuccessiveHalvingPruner, "prune", "asha.prune")
    timed(loop, "train", "trainer: one trial alone")
    timed(group_loop, "_train_epoch", "trainer: one fused epoch's training")
    timed(group_loop, "_evaluate", "trainer: one fused epoch's evaluation")

    with tempfile.TemporaryDirectory(prefix="tunecli-overhead-") as folder:
        sys.argv = ["tunecli", "search", str(args.study.resolve()), "--storage",
                    str(Path(folder) / "overhead.db"), "--name", "overhead", "--seed",
                    str(args.seed), "--set", f"trainer.fuse={args.fuse}"]
        started = time.perf_counter()
        with contextlib.suppress(SystemExit):
            tunecli_main()
        total = time.perf_counter() - started
    print(f"\n{args.study.name}, fuse {args.fuse}, seed {args.seed}: {total:.1f} s in all "
          "(imports, data and the final report included)")
    print("| call | calls | seconds |\n|---|---|---|")
    for key, seconds in totals.most_common():
        print(f"| {key} | {calls[key]} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
