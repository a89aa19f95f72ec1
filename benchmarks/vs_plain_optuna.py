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
25/50/100% of the plain search's wall time, and the ratios; the curves go to a PNG.

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
        batch_size = trial.suggest_categorical("batch_size", [64, 128, 256])
        depth = trial.suggest_int("depth", 1, 3)
        width = trial.suggest_int("width", 64, 1024, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
        optimizer_name = trial.suggest_categorical("optimizer", ["adam", "adamw"])
        layers: list[nn.Module] = [nn.Flatten()]
        size = 28 * 28
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
            size = width
        model = nn.Sequential(*layers, nn.Linear(size, 10)).to(device)
        optimizer_class = torch.optim.Adam if optimizer_name == "adam" else torch.optim.AdamW
        optimizer = optimizer_class(model.parameters(), lr=lr, weight_decay=weight_decay)
        train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
        val_loader = DataLoader(val_set, batch_size=1024)
        best = 0.0
        for epoch in range(1, epochs + 1):
            model.train()
            for x, y in train_loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
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
    return finished


def tunecli_search(data_root: str, seed: int, trials: int, epochs: int,
                   train_samples: int | None, folder: Path) -> list[tuple[float, float]]:
    """``tunecli search`` on the same space: (seconds since the command started, value) per
    completed trial, read back from its storage."""
    import optuna

    storage = f"sqlite:///{folder / f'tunecli-{seed}.db'}"
    command = [sys.executable, "-c", "from tunecli.cli import main; main()", "search",
               str(STUDY), "--data-root", data_root, "--seed", str(seed), "--storage", storage,
               "--n-trials", str(trials), "--set", f"trainer.epochs={epochs}",
               "--set", "budget.timeout=null"]
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
    parser.add_argument("--device", default="cpu", help="the plain script's device")
    parser.add_argument("--png", type=Path, default=Path("vs_plain_optuna.png"))
    parser.add_argument("--json", type=Path, help="write every curve here")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            runs.append({"seed": seed,
                         "plain": best_so_far(plain(args.data_root, seed, args.trials,
                                                    args.epochs, args.train_samples,
                                                    args.device)),
                         "tunecli": best_so_far(tunecli_search(
                             args.data_root, seed, args.trials, args.epochs,
                             args.train_samples, Path(folder)))})
            print(f"seed {seed} done", file=sys.stderr, flush=True)
    report(runs)
    plot(runs, args.png)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    print(f"plot: {args.png}")


def report(runs: list[dict[str, Any]]) -> None:
    target = statistics.median(run["plain"][-1][1] for run in runs)
    print(f"target: the plain search's median final best, {target:.4f}")
    print(f"{'seed':>4}  {'plain to target':>15}  {'tunecli to target':>17}  {'ratio':>6}   "
          f"best at 25% / 50% / 100% of plain's time (plain | tunecli)")
    ratios = []
    for run in runs:
        wall = run["plain"][-1][0]
        to_plain, to_tunecli = reached(run["plain"], target), reached(run["tunecli"], target)
        ratio = to_tunecli / to_plain if math.isfinite(to_plain) else math.nan
        ratios.append(ratio)
        at = "  ".join(f"{best_at(run['plain'], wall * f):.4f}|"
                       f"{best_at(run['tunecli'], wall * f):.4f}" for f in (0.25, 0.5, 1.0))
        print(f"{run['seed']:>4}  {to_plain:>14.0f}s  {to_tunecli:>16.0f}s  {ratio:>6.3f}   "
              f"{at}")
    finite = [r for r in ratios if not math.isnan(r)]
    if finite:
        print(f"median ratio (tunecli time to target / plain's): {statistics.median(finite):.3f}")


if __name__ == "__main__":
    main()
