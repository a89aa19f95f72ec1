"""Pruning a multi-objective study: the same study with pruning by dominance and with none (the
baseline, same run), at equal compute, over seeds.

    .venv/bin/python benchmarks/mo_pruning.py                        # studies/digits-size.yaml
    .venv/bin/python benchmarks/mo_pruning.py --seeds 0 1 2 --epochs 300

Each run gets ``budget.epochs`` (no trial limit), so both spend the same compute; the pruned
one may try more configurations with it. Per seed the table gives the hypervolume of each
front (one reference point for both: the worst feasible value of each objective over both
runs), their ratio, the trials each finished and its front's size, and how many of the
baseline's front trials the pruned run's front dominates or matches.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _search(study: Path, storage: str, name: str, seed: int, epochs: int,
            extra: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "tunecli", "search", str(study), "--storage", storage,
                    "--name", name, "--seed", str(seed), "--set", f"trainer.seed={seed}",
                    "--set", f"budget={{epochs: {epochs}, n_trials: null}}", *extra],
                   check=True, stdout=subprocess.DEVNULL)


def _covered(front: list, other: list, directions: list[str]) -> int:
    """How many of ``other``'s front trials some trial of ``front`` dominates or equals."""
    def no_worse(a: list[float], b: list[float]) -> bool:
        return all((x >= y) if d == "maximize" else (x <= y)
                   for x, y, d in zip(a, b, directions, strict=True))
    return sum(any(no_worse(t.values, o.values) for t in front) for o in other)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", default=str(REPO / "studies" / "digits-size.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=300, help="compute budget per run")
    parser.add_argument("--data-root")
    args = parser.parse_args()

    import optuna

    from tunecli.engine.search import studies as study_module
    from tunecli.reports.hypervolume import hypervolume, reference_point
    from tunecli.reports.summary import reported_trials

    extra = ["--data-root", args.data_root] if args.data_root else []
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{Path(folder) / 'bench.db'}"
        for seed in args.seeds:
            runs = {}
            for label, more in (("pruned", []), ("unpruned", ["--set", "pruner.type=none"])):
                name = f"{label}-{seed}"
                _search(Path(args.study), storage, name, seed, args.epochs, extra + more)
                runs[label] = study_module.load(name, storage)
            spec = runs["pruned"][1]
            directions = list(spec.directions)
            trials = {k: reported_trials(s) for k, (s, _) in runs.items()}
            reference = reference_point(list(trials.values()), directions)
            assert reference is not None
            hv = {k: hypervolume(t, directions, reference) for k, t in trials.items()}
            fronts = {k: s.best_trials for k, (s, _) in runs.items()}
            pruned = sum(t.state == optuna.trial.TrialState.PRUNED
                         and not t.user_attrs.get("infeasible") for t in trials["pruned"])
            rows.append((seed, hv["pruned"], hv["unpruned"], len(trials["pruned"]), pruned,
                         len(trials["unpruned"]), len(fronts["pruned"]),
                         len(fronts["unpruned"]),
                         _covered(fronts["pruned"], fronts["unpruned"], directions)))
    print(f"{Path(args.study).name}: {args.epochs} epochs per run, pruning by dominance "
          "against none (same run)\n")
    print("| seed | hypervolume pruned | unpruned | ratio | trials pruned run (dominance-pruned)"
          " | trials unpruned | front pruned | front unpruned | unpruned front points matched "
          "or beaten |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, hp, hu, tp, np_, tu, fp, fu, cov in rows:
        print(f"| {seed} | {hp:.4g} | {hu:.4g} | {hp / hu:.3f}x | {tp} ({np_}) | {tu} | {fp} | "
              f"{fu} | {cov} of {fu} |")
    ratios = [r[1] / r[2] for r in rows]
    print(f"\nmedian hypervolume ratio (pruned / unpruned): {statistics.median(ratios):.3f}x; "
          f"trials finished at equal compute: {statistics.median(r[3] for r in rows)} against "
          f"{statistics.median(r[5] for r in rows)} (median)")


if __name__ == "__main__":
    main()
