"""tunecli's trainer against the usual hand-written loop, in one run, on the same data and model.

Baseline (the way Optuna's own PyTorch example and most tuning scripts are written): torchvision's
FashionMNIST with ``ToTensor`` and a ``DataLoader`` (batch 128, shuffled), an MLP, Adam, and a
validation pass each epoch. tunecli: the same examples, MLP, optimizer and epochs through
``tunecli.trainer.loop.train`` (tensors made once and kept on the device, index-based batches).

    python benchmarks/trainer_speed.py --data-root ../shared/data [--train-examples 3840]

Prints seconds per epoch for both and their ratio (baseline / tunecli); the one-time cost of
making tunecli's tensors is printed separately, and amortised over the epochs in a second ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn


def mlp(width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    size = 28 * 28
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.ReLU()]
        size = width
    layers.append(nn.Linear(size, 10))
    return nn.Sequential(*layers)


def extracted_root(root: Path) -> Path:
    """A root torchvision's FashionMNIST opens: the given one, or (for a read-only root that
    holds only the .gz originals) a copy extracted to a temporary folder. Both sides of the
    benchmark read the same files."""
    import gzip
    import tempfile

    raw = root / "FashionMNIST" / "raw"
    if (raw / "train-images-idx3-ubyte").exists():
        return root
    target = Path(tempfile.mkdtemp(prefix="tunecli-bench-"))
    (target / "FashionMNIST" / "raw").mkdir(parents=True)
    for gz_file in raw.glob("*-ubyte.gz"):
        out = target / "FashionMNIST" / "raw" / gz_file.name.removesuffix(".gz")
        out.write_bytes(gzip.decompress(gz_file.read_bytes()))
    return target


def baseline_epochs(root: Path, n_train: int, n_val: int, epochs: int, width: int, depth: int,
                    batch: int, device: str = "cpu") -> list[float]:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    full = datasets.FashionMNIST(str(root), train=True, transform=transforms.ToTensor())
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(full), generator=generator).tolist()
    train = DataLoader(Subset(full, order[n_val:n_val + n_train]), batch_size=batch,
                       shuffle=True)
    valid = DataLoader(Subset(full, order[:n_val]), batch_size=batch)
    torch.manual_seed(0)
    model = mlp(width, depth).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for x, y in train:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in valid:
                correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
        times.append(time.perf_counter() - start)
    return times


class _Quiet:
    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        pass


def tunecli_epochs(root: Path, n_train: int, n_val: int, epochs: int, width: int, depth: int,
                   batch: int, device: str = "cpu") -> tuple[list[float], float]:
    from tunecli.spec import TrainerSpec
    from tunecli.trainer import data as data_sets
    from tunecli.trainer import loop

    spec = TrainerSpec.model_validate({
        "dataset": {"name": "fashion-mnist", "val_fraction": n_val / 60000,
                    "max_train_samples": n_train},
        "data_root": str(root), "epochs": epochs, "device": device})
    start = time.perf_counter()
    data_sets.load(spec.dataset, root, False, torch.device(device))
    load_seconds = time.perf_counter() - start
    result = loop.train(spec, {"width": width, "depth": depth, "batch_size": batch, "lr": 1e-3,
                             "optimizer": "adam"}, _Quiet(), metric="val_accuracy")
    return [h["epoch_seconds"] for h in result.history], load_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(Path(__file__).parent.parent.parent /
                                                   "shared" / "data"))
    parser.add_argument("--train-examples", type=int, default=3840,
                        help="default: Optuna's example (30 batches of 128)")
    parser.add_argument("--val-examples", type=int, default=1280)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for both loops")
    args = parser.parse_args()

    extracted = extracted_root(Path(args.data_root).resolve())
    shape = (args.train_examples, args.val_examples, args.epochs, args.width, args.depth,
             args.batch_size, args.device)
    base = baseline_epochs(extracted, *shape)
    ours, load_seconds = tunecli_epochs(extracted, *shape)
    b, t = statistics.median(base), statistics.median(ours)
    print(f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads, "
          f"{args.train_examples} training / {args.val_examples} validation examples, "
          f"MLP {args.depth}x{args.width}, batch {args.batch_size}, {args.epochs} epochs")
    print(f"baseline (torchvision + DataLoader): {b:.4f} s/epoch (median)")
    print(f"tunecli trainer:                     {t:.4f} s/epoch (median); tensors made once in "
          f"{load_seconds:.2f} s")
    print(f"speed-up per epoch: {b / t:.1f}x")
    total_ours = sum(ours) + load_seconds
    print(f"speed-up over {args.epochs} epochs incl. tunecli's one-time load: "
          f"{sum(base) / total_ours:.1f}x (a study reuses the tensors for every trial)")


if __name__ == "__main__":
    main()
