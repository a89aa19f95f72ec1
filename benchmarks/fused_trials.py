"""Fused trials against one trial at a time, measured in one run.

Two parts:

``study`` (default): the same study through the real CLI (``tunecli search``), once with
``--set trainer.fuse=1`` (the baseline) and once with fusion (``auto`` or a given K), with the
same sampler seed, for each seed given. Trials per minute are counted over the search itself
(first trial's start to last trial's end, from the stored trials), so process start-up and data
loading, paid once by both, are left out; wall time is printed as context.

    python benchmarks/fused_trials.py studies/digits.yaml --seeds 0 1 2
    python benchmarks/fused_trials.py studies/fashion-mnist.yaml --data-root ../shared/data

``step``: the trainer alone: K configurations of one width (an MLP's units or a CNN's first
channels, ``--model``) trained one after another
(``trainer.loop.train``) against one fused group (``trainer.group_loop.train_group``), per width and
batch size, with the fused step's achieved GFLOP/s against a large matmul's on this machine.

    python benchmarks/fused_trials.py --step [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_study(study: Path, storage: Path, name: str, seed: int, fuse: str,
              extra: list[str]) -> dict[str, Any]:
    import optuna

    command = [sys.executable, "-m", "tunecli", "search", str(study), "--storage", str(storage),
               "--name", name, "--seed", str(seed), "--set", f"trainer.fuse={fuse}", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=storage.parent)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    loaded = optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")
    trials = [t for t in loaded.get_trials() if t.datetime_complete is not None
              and not t.user_attrs.get("surplus")]
    span = (max(t.datetime_complete for t in trials)  # type: ignore[type-var]
            - min(t.datetime_start for t in trials)).total_seconds()  # type: ignore[type-var]
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    best = loaded.best_value if any(t.state.name == "COMPLETE" for t in trials) else float("nan")
    return {"trials": len(finished), "span": span, "per_minute": 60 * len(finished) / span,
            "wall": wall, "best": best,
            "epochs": sum(len(t.intermediate_values) for t in trials),
            # a fused group's trials share fused_group; each lone trial is a group of its own
            "groups": len({t.user_attrs.get("fused_group", f"alone {t.number}")
                           if t.user_attrs.get("fused_with") else f"alone {t.number}"
                           for t in trials})}


def study_part(args: argparse.Namespace) -> None:
    args.study = args.study.resolve()  # the runs start in a temporary folder
    extra = ["--data-root", str(Path(args.data_root).resolve())] if args.data_root else []
    extra += [item for pair in args.set or [] for item in ("--set", pair)]
    if args.n_trials:
        extra += ["--n-trials", str(args.n_trials)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tunecli-fused-") as folder:
        storage = Path(folder) / "bench.db"
        for seed in args.seeds:
            for fuse in ("1", args.fuse):
                result = run_study(args.study, storage, f"fuse{fuse}-seed{seed}", seed, fuse,
                                   extra)
                rows.append((seed, fuse, result))
                print(f"seed {seed} fuse {fuse:>4}: {result['trials']} trials in "
                      f"{result['span']:.1f} s = {result['per_minute']:.0f}/min, "
                      f"{result['epochs']} epochs in {result['groups']} groups, best "
                      f"{result['best']:.4f} (wall {result['wall']:.1f} s)", flush=True)
    print()
    print(f"| seed | trials/min fuse 1 | trials/min fuse {args.fuse} | ratio | best fuse 1 | "
          f"best fuse {args.fuse} | wall fuse 1 | wall fuse {args.fuse} |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for seed in args.seeds:
        lone = next(r for s, f, r in rows if s == seed and f == "1")
        fused = next(r for s, f, r in rows if s == seed and f == args.fuse)
        ratios.append(fused["per_minute"] / lone["per_minute"])
        print(f"| {seed} | {lone['per_minute']:.0f} | {fused['per_minute']:.0f} | "
              f"{ratios[-1]:.2f}x | {lone['best']:.4f} | {fused['best']:.4f} | "
              f"{lone['wall']:.1f} s | {fused['wall']:.1f} s |")
    bests = {f: [r["best"] for s, ff, r in rows if ff == f] for f in ("1", args.fuse)}
    print(f"\nmedian ratio {statistics.median(ratios):.2f}x; mean best fuse 1 "
          f"{statistics.mean(bests['1']):.4f}, fuse {args.fuse} "
          f"{statistics.mean(bests[args.fuse]):.4f}")


class _Quiet:
    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        pass


def step_part(args: argparse.Namespace) -> None:
    import torch

    from tunecli.spec import TrainerSpec
    from tunecli.trainer import fusable, group_loop, loop

    device = torch.device(args.device)
    user = args.model not in ("mlp", "cnn")
    spec = TrainerSpec.model_validate({"dataset": args.dataset, "epochs": args.epochs,
                                       "device": args.device, "model": args.model,
                                       "fuse": args.k if user else "auto",
                                       **({"data_root": args.data_root}
                                          if args.data_root else {})})
    _, bundle = loop.prepare(spec, "val_accuracy", None, None)
    peak = _matmul_gflops(device)
    layers = (f"{args.depth}-layer MLP" if args.model == "mlp" else
              f"{args.depth}-block CNN (3x3 kernels, 64-unit classifier; width = first channels)"
              if args.model == "cnn" else f"user model {args.model} (width = hidden)")
    print(f"{args.dataset}: {len(bundle.x_train)} training examples; {args.k} configurations "
          f"of a {layers} ({args.optimizer}, dropout {args.dropout}), "
          f"{args.epochs} epochs; a 2048^3 fp32 matmul runs at {peak:.0f} GFLOP/s here")
    print("| width | batch | one at a time | fused | speed-up | fused GFLOP/s | share of matmul |")
    print("|---|---|---|---|---|---|---|")
    for shape in args.shapes:
        width, batch = (int(n) for n in shape.split("x"))
        structure = ({"depth": args.depth, "width": width} if args.model == "mlp" else
                     {"conv_blocks": args.depth, "channels": width, "kernel_size": 3,
                      "classifier_width": 64} if args.model == "cnn" else {"hidden": width})
        configs = [{**structure, "batch_size": batch, "optimizer": args.optimizer,
                    "dropout": args.dropout, "lr": 1e-3 * (1 + i / 4)} for i in range(args.k)]
        loop.train(spec, configs[0], _Quiet(), metric="val_accuracy")  # warm-ups
        group_loop.train_group(spec, [group_loop.MemberJob(c, _Quiet()) for c in configs[:2]],
                        metric="val_accuracy")
        started = time.perf_counter()
        for config in configs:
            loop.train(spec, config, _Quiet(), metric="val_accuracy")
        _sync(device)
        alone = time.perf_counter() - started
        started = time.perf_counter()
        group_loop.train_group(spec, [group_loop.MemberJob(c, _Quiet()) for c in configs],
                        metric="val_accuracy")
        _sync(device)
        together = time.perf_counter() - started
        # Training FLOPs: forward + backward = 3 x (2 x multiply-adds) per example and layer.
        per_example = fusable.work_per_example(spec, configs[0])
        flops = 6 * per_example * len(bundle.x_train) * args.epochs * args.k
        print(f"| {width} | {batch} | {alone:.2f} s | {together:.2f} s | "
              f"{alone / together:.1f}x | {flops / together / 1e9:.1f} | "
              f"{flops / together / 1e9 / peak:.0%} |", flush=True)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _matmul_gflops(device: Any) -> float:
    import torch

    a = torch.randn(2048, 2048, device=device)
    b = torch.randn(2048, 2048, device=device)
    a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(5):
        a @ b
    _sync(device)
    return 5 * 2 * 2048 ** 3 / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, nargs="?", default=ROOT / "studies" / "digits.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--fuse", default="auto", help="fusion to compare with --fuse 1")
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--set", action="append", help="passed to tunecli search --set")
    parser.add_argument("--data-root")
    parser.add_argument("--step", action="store_true", help="the trainer alone, per width")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--model", default="mlp",
                        help="--step: mlp, cnn, or a user model 'file.py:function' (fused "
                             "through torch.func; its width is params['hidden'], as "
                             "examples/custom_model.py reads it)")
    parser.add_argument("--depth", type=int, default=2,
                        help="--step: hidden layers (an MLP) or conv blocks (a CNN)")
    parser.add_argument("--optimizer", default="adam", help="--step: the members' optimizer")
    parser.add_argument("--dropout", type=float, default=0.0, help="--step: dropout rate")
    parser.add_argument("--shapes", nargs="+", default=["64x32", "128x128", "256x32", "512x64"],
                        help="--step: WIDTHxBATCH per row")
    args = parser.parse_args()
    if args.step:
        step_part(args)
    else:
        study_part(args)


if __name__ == "__main__":
    main()
