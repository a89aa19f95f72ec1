"""A whole search against the way people tune today: time to a model this good.

The same Fashion-MNIST MLP search written twice, run one after the other on this machine with
the same seeds:

- *plain*: as Optuna's PyTorch example is written (and most users write it): torchvision's
  ``FashionMNIST`` with ``ToTensor`` and a ``DataLoader``, the space of
  ``studies/fashion-mnist.yaml``, the same epochs, ``TPESampler`` and ``MedianPruner`` with
  their defaults, one trial at a time, reporting each epoch's validation accuracy;
- *tunecli*: ``tunecli search studies/fashion-mnist.yaml`` through the CLI, with its defaults
  (fusion, starting points, its pruner).

Both train on the same 54,000 images and validate on the same 6,000 (tunecli's split, read
from ``tunecli.trainer.data.part_indices``); a trial's value is its best epoch's validation
accuracy in both. The target is the plain search's median final best over the seeds. Printed
per seed and as the median: wall time until the best so far reaches the target, the best at
25/50% of the plain search's wall time, and the ratios; the curves go to a PNG.

    python benchmarks/vs_plain_optuna.py --data-root ../shared/data --seeds 0 1 2
    python benchmarks/vs_plain_optuna.py --data-root ../shared/data --seeds 0 --trials 4 \\
        --epochs 2 --train-samples 5000          # a smoke run, a few minutes
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

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "studies" / "fashion-mnist.yaml"
sys.path.insert(0, str(REPO))


def plain(data_root: str, seed: int, trials: int, epochs: int, train_samples: int | None,
          device: str) -> list[tuple[float, float]]:
    """The plain script's search, in its own process as a user runs it: (seconds since the
    process was started, trial value) per finished trial. torchvision reads extracted files:
    the original .gz files are extracted once, into a writable copy of the root (its md5 check
    passes offline), before the clock starts."""
    import shutil

    from torchvision import datasets

    writable = Path(tempfile.mkdtemp(prefix="fashion-root-"))
    shutil.copytree(Path(data_root) / "FashionMNIST" / "raw", writable / "FashionMNIST" / "raw")
    datasets.FashionMNIST(str(writable), train=True, download=True)
    started = time.time()
    found = subprocess.run([sys.executable, __file__, "--plain-child", str(writable), str(seed),
                            str(trials), str(epochs), str(train_samples or 0), device],
                           check=True, capture_output=True, text=True)
    shutil.rmtree(writable, ignore_errors=True)
    return [(at - started, value) for at, value in json.loads(found.stdout)]


def plain_child(root: str, seed: int, trials: int, epochs: int, train_samples: int | None,
                device: str) -> list[tuple[float, float]]:
    """The plain search itself: (time.time() when it finished, value) per finished trial."""
    import optuna
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from tunecli.spec import load as load_spec
    from tunecli.trainer.data import part_indices

    dataset = datasets.FashionMNIST(root, train=True, download=False,
                                    transform=transforms.ToTensor())
    spec = load_spec(STUDY).trainer.dataset
    train_idx, val_idx, _ = part_indices(len(dataset), spec, own_test=True)
    train_idx = train_idx[:train_samples] if train_samples else train_idx
    train_set, val_set = Subset(dataset, train_idx.tolist()), Subset(dataset, val_idx.tolist())
    finished: list[tuple[float, float]] = []

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        batch_size = trial.suggest_categorical("batch_size", [128, 256, 512])
        depth = trial.suggest_int("depth", 1, 3)
        width = trial.suggest_int("width", 128, 1024, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
        optimizer_name = trial.suggest_categorical("optimizer", ["adam", "adamw"])
        label_smoothing = trial.suggest_float("label_smoothing", 0.0, 0.2)
        layers: list[nn.Module] = [nn.Flatten()]
        size = 28 * 28
        for _ in range(depth):  # the study's fixed batch_norm: true
            layers += [nn.Linear(size, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
                       nn.Dropout(dropout)]
            size = width
        model = nn.Sequential(*layers, nn.Linear(size, 10)).to(device)
        optimizer_class = torch.optim.Adam if optimizer_name == "adam" else torch.optim.AdamW
        optimizer = optimizer_class(model.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
        val_loader = DataLoader(val_set, batch_size=1024)
        best = 0.0
        for epoch in range(1, epochs + 1):
            model.train()
            for x, y in train_loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y, label_smoothing=label_smoothing)
                loss.backward()
                optimizer.step()
            schedule.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for x, y in val_loader:
                    correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
            accuracy = correct / len(val_set)
            best = max(best, accuracy)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        finished.append((time.time(), best))
        return best

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner())
    study.optimize(objective, n_trials=trials)
    same_space(study.trials[0].distributions)
    return finished


PLAIN_FIXED = {"batch_norm": True, "schedule": "cosine"}  # written into the plain objective


def same_space(plain_distributions: dict[str, Any]) -> None:
    """Stop when the plain objective no longer searches the study file's space."""
    from tunecli.engine.strategy.space import distribution
    from tunecli.spec import load as load_spec

    space = load_spec(STUDY).space
    searched = {name: distribution(p) for name, p in space.items() if p.kind != "value"}
    fixed = {name: p.value for name, p in space.items() if p.kind == "value"}
    if searched != plain_distributions or fixed != PLAIN_FIXED:
        raise SystemExit(f"the plain objective's space differs from {STUDY.name}'s: "
                         f"{plain_distributions} and {PLAIN_FIXED} against {searched} and {fixed}")


def tunecli_search(data_root: str, seed: int, trials: int, epochs: int,
                   train_samples: int | None, folder: Path, device: str = "auto",
                   settings: tuple[str, ...] = ()) -> list[tuple[float, float]]:
    """``tunecli search`` on the same space: (seconds since the command started, value) per
    completed trial, read back from its storage."""
    import optuna

    storage = f"sqlite:///{folder / f'tunecli-{seed}.db'}"
    command = [sys.executable, "-c", "from tunecli.cli import main; main()", "search",
               str(STUDY), "--data-root", data_root, "--seed", str(seed), "--storage", storage,
               "--n-trials", str(trials), "--set", f"trainer.epochs={epochs}",
               "--set", "budget.timeout=null", "--set", f"trainer.device={device}"]
    for setting in settings:
        command += ["--set", setting]
    if train_samples:
        command += ["--set", f"trainer.dataset.max_train_samples={train_samples}"]
    started = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    study = optuna.load_study(study_name="fashion-mnist-mlp", storage=storage)
    return sorted((t.datetime_complete.timestamp() - started, float(t.value))
                  for t in study.get_trials() if t.state.name == "COMPLETE")


def best_so_far(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    curve, best = [], -math.inf
    for seconds, value in sorted(points):
        best = max(best, value)
        curve.append((seconds, best))
    return curve


def reached(curve: list[tuple[float, float]], target: float) -> float:
    return next((seconds for seconds, best in curve if best >= target), math.inf)


def best_at(curve: list[tuple[float, float]], seconds: float) -> float:
    values = [best for at, best in curve if at <= seconds]
    return values[-1] if values else math.nan


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Best so far against wall time, both searches, every seed, as a PNG (Pillow)."""
    from PIL import Image, ImageDraw

    width, height, margin = 900, 560, 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    curves = [(run[way], way) for run in runs for way in ("plain", "tunecli") if run[way]]
    end = max(seconds for curve, _ in curves for seconds, _ in curve)
    values = [best for curve, _ in curves for _, best in curve]
    low, high = max(min(values), max(values) - 0.05), max(values)
    span = (high - low) or 1.0

    def xy(seconds: float, value: float) -> tuple[float, float]:
        return (margin + (width - 2 * margin) * seconds / end,
                height - margin - (height - 2 * margin) * (max(value, low) - low) / span)

    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    for i in range(5):
        _, y = xy(0, low + span * i / 4)
        draw.text((8, y - 6), f"{low + span * i / 4:.3f}", fill="black")
        x, _ = xy(end * i / 4, low)
        draw.text((x - 10, height - margin + 8), f"{end * i / 4:.0f}s", fill="black")
    draw.text((width // 2 - 60, height - 30), "wall time", fill="black")
    draw.text((margin, 20), "best validation accuracy so far (each seed)", fill="black")
    colours = {"plain": "#d62728", "tunecli": "#1f77b4"}
    for curve, way in curves:
        steps = []
        for (seconds, best), following in zip(curve, [*curve[1:], (end, curve[-1][1])],
                                              strict=True):
            steps += [xy(seconds, best), xy(following[0], best)]
        draw.line(steps, fill=colours[way], width=2)
    for i, (way, colour) in enumerate(colours.items()):
        draw.text((width - margin - 100, margin + 10 + 16 * i), way, fill=colour)
    image.save(path)


def main() -> None:
    if sys.argv[1:2] == ["--plain-child"]:
        root, seed, trials, epochs, samples, device = sys.argv[2:8]
        print(json.dumps(plain_child(root, int(seed), int(trials), int(epochs),
                                     int(samples) or None, device)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-samples", type=int, help="fewer training images (smoke runs)")
    parser.add_argument("--device", default="cpu", help="both searches' device (cpu, cuda)")
    parser.add_argument("--png", type=Path, default=Path("vs_plain_optuna.png"))
    parser.add_argument("--json", type=Path, help="write every curve here")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="KEY=VALUE", help="a setting for the tunecli search only "
                        "(e.g. trainer.precision=bf16); repeatable")
    parser.add_argument("--plain-from", type=Path, help="a --json file of an earlier run on "
                        "this machine: take its plain curves instead of running them again")
    args = parser.parse_args()
    recorded = ({run["seed"]: run["plain"] for run in json.loads(args.plain_from.read_text())}
                if args.plain_from else {})
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            runs.append({"seed": seed,
                         "plain": recorded[seed] if seed in recorded else best_so_far(plain(
                             args.data_root, seed, args.trials, args.epochs,
                             args.train_samples, args.device)),
                         "tunecli": best_so_far(tunecli_search(
                             args.data_root, seed, args.trials, args.epochs,
                             args.train_samples, Path(folder), args.device,
                             tuple(args.settings)))})
            print(f"seed {seed} done", file=sys.stderr, flush=True)
    report(runs)
    plot(runs, args.png)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    print(f"plot: {args.png}")


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures, per seed and as medians: time to the target (the plain search's median final
    best) for both, tunecli's time as a share of the plain search's whole wall time (the goal)
    and of its time to the target, the final bests, and the best at 25/50% of the plain
    search's wall time. ``report`` prints them; ``gpu_check.py`` quotes them."""
    target = statistics.median(run["plain"][-1][1] for run in runs)
    seeds = []
    for run in runs:
        wall = run["plain"][-1][0]
        to_plain, to_tunecli = reached(run["plain"], target), reached(run["tunecli"], target)
        seeds.append({
            "seed": run["seed"], "wall": wall, "to_plain": to_plain, "to_tunecli": to_tunecli,
            "of_wall": to_tunecli / wall,
            "of_reached": to_tunecli / to_plain if math.isfinite(to_plain) else math.nan,
            "final": (run["plain"][-1][1], run["tunecli"][-1][1]),
            "at": [(best_at(run["plain"], wall * f), best_at(run["tunecli"], wall * f))
                   for f in (0.25, 0.5)]})
    return {"target": target, "seeds": seeds,
            "of_wall": statistics.median(s["of_wall"] for s in seeds),
            "of_reached": _median([s["of_reached"] for s in seeds]),
            "final": tuple(statistics.median(s["final"][i] for s in seeds) for i in (0, 1))}


def report(runs: list[dict[str, Any]]) -> None:
    figures = summary(runs)
    print(f"target: the plain search's median final best, {figures['target']:.4f}")
    print(f"{'seed':>4}  {'plain wall':>10}  {'plain to target':>15}  {'tunecli to target':>17}  "
          f"{'/ wall':>6}  {'/ plain':>7}  {'final best (plain | tunecli)':>28}   "
          f"best at 25% / 50% of plain's wall time")
    for s in figures["seeds"]:
        at = "  ".join(f"{plain:.4f}|{ours:.4f}" for plain, ours in s["at"])
        print(f"{s['seed']:>4}  {s['wall']:>9.0f}s  {s['to_plain']:>14.0f}s  "
              f"{s['to_tunecli']:>16.0f}s  {s['of_wall']:>6.3f}  {s['of_reached']:>7.3f}  "
              f"{s['final'][0]:>13.4f} | {s['final'][1]:.4f}   {at}")
    print(f"median: tunecli reaches the target in {figures['of_wall']:.3f} of the plain "
          f"search's wall time ({figures['of_reached']:.3f} of its time to the target); median "
          f"final best plain {figures['final'][0]:.4f}, tunecli {figures['final'][1]:.4f}")


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


if __name__ == "__main__":
    main()
