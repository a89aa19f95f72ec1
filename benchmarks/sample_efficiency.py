"""Time to a good model: how much compute each search strategy needs to reach a target.

Every strategy runs the same study through the real CLI (``tunecli search``) under the same
compute budget (``budget.epochs``), once per seed (the trainer seed equals the sampler seed).
Epochs are counted in trial order, as ``engine/compute`` counts them (pruned trials pay for the
epochs they trained); the target is plain Optuna TPE's median final best (random search's where
TPE is not run), unless ``--target``.

    python benchmarks/sample_efficiency.py --task fashion-mlp --data-root ../shared/data
    python benchmarks/sample_efficiency.py --task digits-cnn
    python benchmarks/sample_efficiency.py --task tabular
    python benchmarks/sample_efficiency.py studies/digits.yaml --strategies random optuna-tpe

A task (``benchmarks/tasks/``) runs plain TPE and tunecli's defaults over 5 seeds; ``--share``
stops the strategies other than plain TPE at that share of the budget (enough to judge a goal
set at a share). The study must maximize its metric. Prints one table (epochs and seconds to the
target per seed, the worst seed and the median, how many seeds met the goal; the best at 25%, 50%
and 100% of the budget) with one standard error of the validation metric near the target, and
writes best-so-far against epochs per strategy as a PNG (``--png``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# name -> the --set overrides that make the strategy (on top of the study file)
STRATEGIES: dict[str, list[str]] = {
    # The baselines train one trial at a time, as a hand-written loop would (a fused round
    # fixes its members' structure, which would change what random search samples).
    "random": ["sampler={type: random}", "pruner={type: none}", "trainer.fuse=1"],
    "optuna-tpe": ["sampler={type: tpe, n_startup_trials: 10, center_first: false, "
                   "defaults_first: false}",
                   "pruner={type: none}", "trainer.fuse=1"],
    "tunecli-default": ["sampler={}", "pruner={}"],  # whatever a study that names none gets
    "tunecli-default-fuse-1": ["sampler={}", "pruner={}", "trainer.fuse=1"],
    # Variations of the defaults, one change each: TPE's multivariate model, the pruner's
    # warm-up, no pruning, ASHA instead of the median pruner.
    "defaults-multivariate": ["sampler={options: {multivariate: true, group: true}}", "pruner={}"],
    "defaults-warmup-2": ["sampler={}", "pruner={min_epochs: 2}"],
    "defaults-no-pruning": ["sampler={}", "pruner={type: none}"],
    "defaults-asha": ["sampler={}", "pruner={type: asha, min_epochs: 1, reduction_factor: 3}"],
    # Successive halving over data size too: epoch 1 on a quarter of the training set, epoch 2
    # on half (a trial pruned after epoch 1 costs a quarter of an epoch).
    "defaults-data-shares": ["sampler={}", "pruner={}", "trainer.data_shares=[0.25, 0.5]"],
    "defaults-data-eighths": ["sampler={}", "pruner={}", "trainer.data_shares=[0.125, 0.25, 0.5]"],
    "defaults-data-shares-startup-3": ["sampler={n_startup_trials: 3}", "pruner={}",
                                       "trainer.data_shares=[0.25, 0.5]"],
    "defaults-asha-data-shares": ["sampler={}",
                                  "pruner={type: asha, min_epochs: 1, reduction_factor: 3}",
                                  "trainer.data_shares=[0.25, 0.5]"],
    "tpe-asha": ["sampler={type: tpe}",
                 "pruner={type: asha, min_epochs: 1, reduction_factor: 3}"],
    "hyperopt-tpe": ["sampler={type: hyperopt-tpe}", "pruner={type: none}"],
    "study-file": [],
    # Egele et al. (2023): every configuration one epoch, then the best few trained fully.
    "one-epoch-top-3": [],
}
TOP_K = 3
# name -> its study file (the tabular task's CSV is written by write_tabular).
TASKS: dict[str, str] = {
    "fashion-mlp": "tasks/fashion-mlp.yaml",
    "digits-cnn": "tasks/digits-cnn.yaml",
    "tabular": "tasks/tabular.yaml",
}
TASK_STRATEGIES = ["optuna-tpe", "tunecli-default"]


def write_tabular(folder: Path) -> Path:
    """The tabular task's CSV: Friedman #1 (five of ten columns matter, no noise), 20,000 rows."""
    import numpy as np
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=20_000, n_features=10, noise=0.0, random_state=0)
    path = folder / "friedman1.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.6g", comments="",
               header=",".join([*(f"x{i}" for i in range(10)), "y"]))
    return path


def standard_error(loaded: Any, study: Path, data_root: str | None, value: float) -> str:
    """One standard error of the study's validation metric at ``value`` (``loaded``: the study
    file as ``spec.load`` read it): binomial for accuracy, Olkin-Finn's large-sample
    approximation for R^2 (other metrics: not given)."""
    from tunecli.trainer import data

    metric = loaded.metric
    dataset = data.with_base_dir(loaded.trainer.dataset, str(study.parent))
    raw = data.DATASETS[dataset.name](dataset, Path(data_root) if data_root else None, False)
    _, val_idx, _ = data.part_indices(len(raw.x), dataset, raw.ordered, raw.test is not None)
    n = len(val_idx)
    if metric == "val_accuracy":
        return f"{math.sqrt(value * (1 - value) / n):.4f} ({n} validation examples)"
    if metric == "val_r2":
        return f"{2 * math.sqrt(value) * (1 - value) / math.sqrt(n):.5f} ({n} validation rows)"
    return f"not computed for {metric} ({n} validation examples)"


def search(study: Path, folder: Path, name: str, seed: int, sets: list[str],
           extra: list[str]) -> list[Any]:
    """One ``tunecli search``; its trials in order."""
    import optuna

    storage = folder / "runs.db"
    command = [sys.executable, "-m", "tunecli", "search", str(study), "--storage", str(storage),
               "--name", name, "--seed", str(seed), *extra,
               *[item for s in [*sets, f"trainer.seed={seed}"] for item in ("--set", s)]]
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return sorted(optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")
                  .get_trials(), key=lambda t: t.number)


def run(study: Path, folder: Path, strategy: str, seed: int, budget: int,
        extra: list[str], epochs_per_trial: int) -> dict[str, Any]:
    started = time.perf_counter()
    if strategy == "one-epoch-top-3":
        screen_budget = budget - TOP_K * epochs_per_trial
        screened = search(study, folder, f"screen-{seed}", seed,
                          ["sampler={type: random}", "pruner={type: none}", "trainer.epochs=1",
                           f"budget={{epochs: {screen_budget}, n_trials: null}}"], extra)
        best = sorted((t for t in screened if t.value is not None), key=lambda t: -t.value)
        queued = folder / f"top-{seed}.yaml"
        queued.write_text(json.dumps([t.params for t in best[:TOP_K]]))  # JSON is YAML
        runs = [screened, search(study, folder, f"{strategy}-{seed}", seed,
                                 ["sampler={type: random}", "pruner={type: none}",
                                  f"budget={{n_trials: {TOP_K}}}"],
                                 [*extra, "--enqueue", str(queued)])]
    else:
        runs = [search(study, folder, f"{strategy}-{seed}", seed,
                       [*STRATEGIES[strategy], f"budget={{epochs: {budget}, n_trials: null}}"],
                       extra)]
    curve = _curve(runs, data_shares(STRATEGIES.get(strategy, [])))
    return {"curve": curve, "wall": time.perf_counter() - started,
            "final": curve[-1][1] if curve else math.nan}


def data_shares(sets: list[str]) -> list[float]:
    """The ``trainer.data_shares`` a strategy's overrides set (none: every epoch is whole)."""
    for item in sets:
        if item.startswith("trainer.data_shares="):
            return [float(v) for v in json.loads(item.split("=", 1)[1])]
    return []


def _curve(runs: list[list[Any]], shares: list[float]) -> list[tuple[float, float, float]]:
    """(epochs so far, best so far, search seconds so far) after each trial, in order; an epoch
    on a share of the data (``shares``) costs that share. The seconds of a search run from its
    first trial's start (process start-up left out)."""
    from tunecli.engine.search import budget

    def cost(epochs: int) -> float:
        return sum(shares[e] if e < len(shares) else 1.0 for e in range(epochs))

    curve: list[tuple[float, float, float]] = []
    spent, best, before = 0.0, math.nan, 0.0
    for trials in runs:
        first = min((t.datetime_start for t in trials if t.datetime_start), default=None)
        seconds = 0.0
        for t in trials:
            spent += cost(budget.epochs_of(t))
            if t.state.name == "COMPLETE" and t.value is not None:
                best = t.value if math.isnan(best) else max(best, t.value)
            if t.datetime_complete and first:
                seconds = max(seconds, (t.datetime_complete - first).total_seconds())
            curve.append((spent, best, before + seconds))
        before += seconds
    return curve


def reach(curve: list[tuple[float, float, float]], target: float) -> tuple[float, float]:
    """Epochs and seconds when the best so far first reaches ``target`` (inf: never)."""
    for spent, best, seconds in curve:
        if not math.isnan(best) and best >= target:
            return spent, seconds
    return math.inf, math.inf


def best_at(curve: list[tuple[float, float, float]], epochs: float) -> float:
    values = [best for spent, best, _ in curve if spent <= epochs and not math.isnan(best)]
    return values[-1] if values else math.nan


def plot(results: dict[str, list[dict[str, Any]]], budget: int, path: Path) -> None:
    """Best so far against epochs, the median over seeds per strategy, as a PNG (Pillow)."""
    from PIL import Image, ImageDraw

    width, height, margin = 900, 560, 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    steps = list(range(0, budget + 1, max(1, budget // 100)))
    medians = {name: [statistics.median([best_at(r["curve"], e) for r in runs
                                         if not math.isnan(best_at(r["curve"], e))] or [math.nan])
                      for e in steps] for name, runs in results.items()}
    values = [v for series in medians.values() for v in series if not math.isnan(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    low = max(low, high - 0.15)  # the interesting part: the last few points of accuracy
    span = (high - low) or 1.0

    def xy(epochs: float, value: float) -> tuple[float, float]:
        return (margin + (width - 2 * margin) * epochs / budget,
                height - margin - (height - 2 * margin) * (value - low) / span)

    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    for i in range(5):
        value = low + span * i / 4
        _, y = xy(0, value)
        draw.text((8, y - 6), f"{value:.3f}", fill="black")
        epochs = budget * i / 4
        x, _ = xy(epochs, low)
        draw.text((x - 10, height - margin + 8), f"{epochs:.0f}", fill="black")
    draw.text((width // 2 - 80, height - 30), "epochs (all trials)", fill="black")
    draw.text((margin, 20), "best so far (median over seeds)", fill="black")
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    for i, (name, series) in enumerate(medians.items()):
        colour = colours[i % len(colours)]
        points = [xy(e, max(v, low)) for e, v in zip(steps, series, strict=True)
                  if not math.isnan(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3)
        draw.text((width - margin - 150, margin + 10 + 16 * i), name, fill=colour)
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, nargs="?", default=ROOT / "studies" / "digits.yaml")
    parser.add_argument("--task", choices=list(TASKS),
                        help="one of the three time-to-a-good-model tasks (instead of a study)")
    parser.add_argument("--strategies", nargs="*", choices=list(STRATEGIES),
                        help="default: plain TPE and tunecli's defaults for a task, else all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=int, help="epochs per run (default: the study's "
                                                   "budget.epochs, else 40 trials' worth)")
    parser.add_argument("--share", type=float, default=1.0,
                        help="stop strategies other than optuna-tpe at this share of the budget")
    parser.add_argument("--goal", type=float, default=0.25,
                        help="the share of the budget within which the target should be met")
    parser.add_argument("--target", type=float,
                        help="default: optuna-tpe's (else random's) median final best")
    parser.add_argument("--set", action="append", help="passed to tunecli search --set")
    parser.add_argument("--data-root")
    parser.add_argument("--png", type=Path, default=Path("sample_efficiency.png"))
    parser.add_argument("--save", type=Path, help="also write every run's curve as JSON")
    parser.add_argument("--load", type=Path, nargs="+", default=[],
                        help="runs saved earlier (--save), shown with this run's")
    args = parser.parse_args()
    from tunecli import spec as spec_module

    study = (ROOT / "benchmarks" / TASKS[args.task] if args.task else args.study).resolve()
    strategies = args.strategies if args.strategies is not None else (
        TASK_STRATEGIES if args.task else list(STRATEGIES))
    results: dict[str, list[dict[str, Any]]] = {}
    for saved in args.load:
        for name, runs in json.loads(saved.read_text()).items():
            results.setdefault(name, []).extend(runs)
    with tempfile.TemporaryDirectory(prefix="tunecli-efficiency-") as folder:
        sets = list(args.set or [])
        if args.task == "tabular":
            sets.append(f"trainer.dataset.path={write_tabular(Path(folder))}")
        overrides = spec_module.parse_assignments(sets)
        loaded = spec_module.load(study, overrides)
        epochs_per_trial = loaded.trainer.epochs
        budget = args.budget or loaded.budget.epochs or 40 * epochs_per_trial
        extra = [item for s in sets for item in ("--set", s)]
        if args.data_root:
            extra += ["--data-root", str(Path(args.data_root).resolve())]
        for name in strategies:
            spend = budget if name == "optuna-tpe" else int(budget * args.share)
            for seed in args.seeds:
                result = run(study, Path(folder), name, seed, spend, extra, epochs_per_trial)
                results.setdefault(name, []).append(result)
                print(f"{name} seed {seed}: final best {result['final']:.4f} "
                      f"(wall {result['wall']:.0f} s)", flush=True)
        if args.save:
            args.save.write_text(json.dumps(results))
        target = args.target
        if target is None:
            source = "optuna-tpe" if "optuna-tpe" in results else "random"
            finals = [r["final"] for r in results.get(source, []) if not math.isnan(r["final"])]
            target = statistics.median(finals) if finals else max(
                r["final"] for runs in results.values() for r in runs)
        error = standard_error(loaded, study, args.data_root, target)
    print(f"\ntarget {target:.5f}, one standard error {error}; budget {budget} epochs "
          f"({budget // epochs_per_trial} whole trials); seeds {' '.join(map(str, args.seeds))}\n")
    print(table(results, target, budget, args.goal))
    plot(results, budget, args.png)
    print(f"\nplot: {args.png}")


def table(results: dict[str, list[dict[str, Any]]], target: float, budget: int,
          goal: float) -> str:
    """The markdown table: epochs to ``target`` per seed, the worst and the median, the seeds
    within ``goal`` of the budget, the median best at 25%, 50% and 100% of it."""
    rows = ["| strategy | epochs to target per seed | worst | median | within "
            f"{goal:.0%} | median seconds to target | best at 25% | 50% | 100% |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        reached = [reach(r["curve"], target) for r in runs]
        epochs = [e for e, _ in reached]
        shown = ", ".join("never" if math.isinf(e) else f"{e:g}" for e in epochs)
        spent = max(r["curve"][-1][0] for r in runs if r["curve"])

        def share(e: float, spent: float = spent) -> str:
            return (f">{spent:g} (>{spent / budget:.0%})" if math.isinf(e)
                    else f"{e:g} ({e / budget:.0%})")

        at = [statistics.median([best_at(r["curve"], budget * q) for r in runs])
              if spent >= budget * q else math.nan for q in (0.25, 0.5, 1.0)]
        met = sum(e <= goal * budget for e in epochs)
        rows.append(f"| {name} | {shown} | {share(max(epochs))} | "
                    f"{share(statistics.median(epochs))} | {met} of {len(epochs)} | "
                    f"{statistics.median([s for _, s in reached]):.0f} | "
                    + " | ".join("-" if math.isnan(v) else f"{v:.4f}" for v in at) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
