"""What tunecli's storage adds per trial to Optuna's own: the retries after a lost connection,
the claim token every creation carries and the read after it that finds a copy a retry made.

Both in one run, alternating, on a SQLite file: ask + tell with Optuna's random sampler (so the
storage, not the sampler, is what is timed) through ``open_storage`` against Optuna's
``RDBStorage`` opened on the same kind of file.

Usage: python benchmarks/storage_writes.py [--trials 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from tunecli.engine.store.storage import open_storage, quiet_optuna


def per_trial(storage: object, trials: int) -> float:
    study = optuna.create_study(storage=storage,  # type: ignore[arg-type]
                                sampler=optuna.samplers.RandomSampler(seed=0))
    started = time.perf_counter()
    for _ in range(trials):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 1))
    return (time.perf_counter() - started) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    quiet_optuna()
    warnings.simplefilter("ignore")  # ask() outside optimize on a heartbeat storage
    folder = Path(tempfile.mkdtemp())
    optuna_s, tunecli_s = [], []
    for i in range(args.rounds):
        optuna_s.append(per_trial(optuna.storages.RDBStorage(f"sqlite:///{folder}/o{i}.db"),
                                  args.trials))
        tunecli_s.append(per_trial(open_storage(f"sqlite:///{folder}/t{i}.db",
                                                heartbeat=False), args.trials))
    plain, ours = statistics.median(optuna_s), statistics.median(tunecli_s)
    print(f"{args.trials} trials of ask + tell, median of {args.rounds} rounds: Optuna's "
          f"RDBStorage {plain * 1000:.2f} ms a trial, tunecli's storage {ours * 1000:.2f} ms "
          f"({ours / plain:.2f}x, {(ours - plain) * 1000:+.2f} ms a trial)")


if __name__ == "__main__":
    main()
