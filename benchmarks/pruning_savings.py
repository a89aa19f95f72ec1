"""What pruning buys: one study run twice, with its pruner and with none (the baseline).

Prints, from the same run, the epochs and training time of each and the ratio, and the best
value each reached after equal epochs (`tunecli report A B`, the comparison users see).

    .venv/bin/python benchmarks/pruning_savings.py                      # default digits study
    .venv/bin/python benchmarks/pruning_savings.py --data-root ../shared/data   # Fashion-MNIST

Both runs use the same sampler seed, so they start from the same random trials; after that TPE
sees different histories (pruned trials report fewer epochs), as it would for a user.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _search(study: Path, storage: str, name: str, extra: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tunecli", "search", str(study), "--storage", storage,
                    "--name", name, *extra], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="torchvision root with FashionMNIST/raw: run the "
                                            "Fashion-MNIST study instead of digits")
    parser.add_argument("--n-trials", type=int, default=None, help="trials per run")
    parser.add_argument("--train-samples", type=int, default=10000,
                        help="Fashion-MNIST: training examples per trial (keeps it minutes)")
    args = parser.parse_args()

    from rich.console import Console

    from tunecli.engine.search import studies as study_module
    from tunecli.reports import compare

    extra: list[str] = []
    if args.data_root:
        study_file = REPO / "studies" / "fashion-mnist.yaml"
        extra += ["--data-root", args.data_root, "--set",
                  f"trainer.dataset.max_train_samples={args.train_samples}"]
    else:
        study_file = REPO / "studies" / "digits.yaml"
    if args.n_trials:
        extra += ["--n-trials", str(args.n_trials)]
    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{Path(folder) / 'bench.db'}"
        wall = {"pruned": _search(study_file, storage, "pruned", extra),
                "baseline": _search(study_file, storage, "baseline",
                                    [*extra, "--set", "pruner.type=none"])}
        data = compare.comparison([study_module.load(n, storage) for n in ("pruned",
                                                                           "baseline")])
    console = Console(width=100)
    compare.show(console, data)
    pruned, baseline = data["studies"]["pruned"], data["studies"]["baseline"]
    console.print(f"\nstudy {study_file.name}, {pruned['pruner']} against none "
                  f"(baseline, same run):")
    console.print(f"  epochs trained: {pruned['epochs']['spent']} / "
                  f"{baseline['epochs']['spent']} = "
                  f"{pruned['epochs']['spent'] / baseline['epochs']['spent']:.2f}x")
    console.print(f"  training time:  {pruned['epochs']['seconds_spent']:.1f}s / "
                  f"{baseline['epochs']['seconds_spent']:.1f}s = "
                  f"{pruned['epochs']['seconds_spent'] / baseline['epochs']['seconds_spent']:.2f}x")
    console.print(f"  wall time:      {wall['pruned']:.1f}s / {wall['baseline']:.1f}s = "
                  f"{wall['pruned'] / wall['baseline']:.2f}x")
    console.print(f"  best {data['metric']}: {pruned['best']['value']:.4f} with pruning, "
                  f"{baseline['best']['value']:.4f} without")


if __name__ == "__main__":
    main()
