"""tunecli beside other work: its own thread choice against every fixed thread count.

Each workload runs as a whole ``tunecli search`` process, alone and beside other work (one and
two CPU-bound loops, a second tunecli search of the default study), once with tunecli's choice
(``auto``) and once per fixed count (``TUNECLI_THREADS=N``), all in this run, in turn. It prints
the wall time of each, auto's ratio to the best fixed count in that condition (goal: at most
1.10) and, for auto, its ratio to its own idle time (goal: at most 2.0 beside one busy process).

    .venv/bin/python benchmarks/shared_machine.py                              # digits only
    .venv/bin/python benchmarks/shared_machine.py --data-root ../shared/data   # + Fashion-MNIST
    .venv/bin/python benchmarks/shared_machine.py --repeats 2 --json shared.json
    .venv/bin/python benchmarks/shared_machine.py --data-root ../shared/data --only fashion

Workloads: the default study (``studies/digits.yaml``, 8 trials, ``--fuse 1``) and the best
Fashion-MNIST configuration (``benchmarks/fashion-best-config.yaml``, 1 epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUNECLI = [sys.executable, "-m", "tunecli"]
CONDITIONS = ("idle", "1 busy loop", "2 busy loops", "a 2nd search")


def _workloads(data_root: str | None, only: str | None) -> dict[str, list[str]]:
    found = {"digits (8 trials)": [str(ROOT / "studies" / "digits.yaml"), "--n-trials", "8",
                                   "--fuse", "1", "--timeout", "30m"]}
    if data_root:
        found["fashion best (1 epoch)"] = [
            str(ROOT / "benchmarks" / "fashion-best-config.yaml"), "--data-root",
            str(Path(data_root).resolve()), "--set", "trainer.epochs=1"]
    return {name: args for name, args in found.items() if not only or name.startswith(only)}


def _background(condition: str, folder: Path) -> list[subprocess.Popen[bytes]]:
    """The other work of ``condition``, started (and running) before the timed search."""
    loop = [sys.executable, "-c", "while True: pass"]
    if condition == "idle":
        return []
    if condition.endswith("busy loop") or condition.endswith("busy loops"):
        return [subprocess.Popen(loop) for _ in range(int(condition[0]))]
    study = [*TUNECLI, "search", str(ROOT / "studies" / "digits.yaml"), "--n-trials", "100000",
             "--timeout", "2h", "--name", "beside", "--storage",
             f"sqlite:///{folder / 'beside.db'}"]
    return [subprocess.Popen(study, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=folder)]


def _timed(args: list[str], threads: str, folder: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "TUNECLI_THREADS"}
    if threads != "auto":
        env["TUNECLI_THREADS"] = threads
    storage = folder / f"run-{time.monotonic_ns()}.db"
    started = time.perf_counter()
    subprocess.run([*TUNECLI, "search", *args, "--storage", f"sqlite:///{storage}"],
                   env=env, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(workloads: dict[str, list[str]], settings: list[str], repeats: int
            ) -> dict[str, dict[str, dict[str, float]]]:
    """workload -> condition -> setting -> median wall seconds."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tunecli-shared-") as tmp:
        folder = Path(tmp)
        for condition in CONDITIONS:
            others = _background(condition, folder)
            try:
                for name, args in workloads.items():
                    times: dict[str, list[float]] = {s: [] for s in settings}
                    for _ in range(repeats):  # settings in turn, so drift hits each alike
                        for setting in settings:
                            times[setting].append(_timed(args, setting, folder))
                    results.setdefault(name, {})[condition] = {
                        s: statistics.median(t) for s, t in times.items()}
                    print(f"{name:24} {condition:14} " + "  ".join(
                        f"{s}={v:.1f}s" for s, v in results[name][condition].items()),
                        flush=True)
            finally:
                for proc in others:
                    proc.terminate()
                    proc.wait()
    return results


def report(results: dict[str, dict[str, dict[str, float]]], settings: list[str]) -> str:
    fixed = [s for s in settings if s != "auto"]
    lines = ["| workload | condition | " + " | ".join(
        "auto" if s == "auto" else f"{s} thread{'s' if s != '1' else ''}" for s in settings)
        + " | auto / best fixed | auto / auto idle |", "|" + "---|" * (len(settings) + 4)]
    for name, by_condition in results.items():
        idle = by_condition["idle"]["auto"]
        for condition, times in by_condition.items():
            best = min(times[s] for s in fixed)
            lines.append(f"| {name} | {condition} | " + " | ".join(
                f"{times[s]:.1f} s" for s in settings)
                + f" | {times['auto'] / best:.2f} | {times['auto'] / idle:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="torchvision data root with FashionMNIST/raw")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=("digits", "fashion"), help="one workload")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    settings = ["auto", *(str(n) for n in range(1, cores + 1))]
    print(f"{cores} usable cores; each figure the median of {args.repeats} run(s)", flush=True)
    results = measure(_workloads(args.data_root, args.only), settings, args.repeats)
    print()
    print(report(results, settings))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
