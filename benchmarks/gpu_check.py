"""Everything a GPU can tell us about tunecli, in one prepared run (``gpu_check.sh`` runs it).

Steps, each with its share of the time limit (a search that runs out of time stops at its
``--timeout`` and is measured as far as it got; a step that fails is recorded with its error and
the next one runs):

1. ``tests``: the trainer's tests on this device (``device: auto`` picks CUDA when there is one);
2. ``trainer_speed``: tunecli's trainer against the DataLoader loop (``trainer_speed.py``);
3. ``fused``: ``tunecli search`` one trial at a time against fused groups of K members, for the
   digits MLP, the Fashion-MNIST MLP and the digits CNN (trials per minute, best values, GPU
   utilisation and peak memory sampled with ``nvidia-smi``);
4. ``measures``: ``latency_ms`` and ``peak_memory_mb`` of an MLP and a CNN on this device;
5. ``trials_per_device``: one search with 1 and with 2 concurrent trials per GPU
   (``--devices 0 --trials-per-device N``; on the CPU, ``--workers N``);
6. ``vs_plain``: ``vs_plain_optuna.py``'s two searches, one seed, reduced sizes.

Writes every figure to one JSON file (``--out``) and prints them as one Markdown table.

    bash benchmarks/gpu_check.sh --data-root ../shared/data                 # a GPU, < 8 minutes
    bash benchmarks/gpu_check.sh --device cpu --data-root ROOT              # small, about 35 s
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Sizes:
    """How big each step is. The CPU sizes exercise every step in about 35 s on two
    cores; the GPU sizes are meant to fill eight minutes on one card, and the time limit holds
    whatever they turn out to cost."""

    limit_s: float
    tests: tuple[str, ...]
    groups: tuple[int, ...]
    alone_trials: int
    epochs: int
    fashion_samples: int
    speed_examples: int
    plain_trials: int
    plain_epochs: int
    fused_studies: int  # how many of FUSED_STUDIES the fused step searches


GPU = Sizes(limit_s=470, groups=(8, 32, 64), alone_trials=16, epochs=4, fashion_samples=20000,
            speed_examples=20000, plain_trials=8, plain_epochs=3, fused_studies=3,
            tests=("tests/test_trainer.py", "tests/test_fused.py", "tests/test_augment.py",
                   "tests/test_stacked_optim.py", "tests/test_layers.py",
                   "tests/test_sequences.py", "tests/test_repeats.py"))
# On the CPU each step runs once, as small as it can and still be the step: one study fused
# (the others differ only in their study file), few trials, few processes.
CPU = Sizes(limit_s=170, groups=(2,), alone_trials=1, epochs=1, fashion_samples=200,
            speed_examples=256, plain_trials=2, plain_epochs=1, fused_studies=1,
            tests=("tests/test_fused.py::test_a_group_shares_its_structure",))

# The share of the time limit each step may use (they add up to 1).
SHARES = {"tests": 0.12, "trainer_speed": 0.06, "fused": 0.5, "measures": 0.04,
          "trials_per_device": 0.1, "vs_plain": 0.18}


@dataclass
class Row:
    step: str
    what: str
    value: str


class Check:
    """The run's settings, its rows and its deadline."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.device = args.device
        self.cuda = args.device == "cuda"
        if self.cuda and not torch.cuda.is_available():
            raise SystemExit("gpu_check: --device cuda, but torch sees no CUDA device "
                             "(use --device cpu)")
        self.sizes = GPU if self.cuda else CPU
        self.data_root = str(Path(args.data_root).resolve())
        self.rows: list[Row] = []
        self.errors: dict[str, str] = {}
        self.folder = Path(tempfile.mkdtemp(prefix="tunecli-gpu-check-"))
        self.started = time.perf_counter()
        self.machine = (torch.cuda.get_device_name(0) if self.cuda
                        else f"{platform.processor() or platform.machine()} CPU, "
                             f"{torch.get_num_threads()} threads")
        self.torch = torch.__version__

    def add(self, step: str, what: str, value: str) -> None:
        self.rows.append(Row(step, what, value))
        print(f"  {step}: {what} = {value}", flush=True)

    def budget(self, step: str) -> float:
        """Seconds this step may use: its share, never past the whole run's limit."""
        left = self.sizes.limit_s - (time.perf_counter() - self.started)
        return max(5.0, min(SHARES[step] * self.sizes.limit_s, left))

    def search(self, study: str, name: str, *extra: str, fuse: int = 1,
               timeout: float) -> dict[str, Any]:
        """``tunecli search`` as a user runs it, measured from its stored trials (the
        ``fused_trials.py`` way); GPU utilisation and memory are sampled while it runs."""
        from fused_trials import run_study

        storage = self.folder / f"{name}.db"
        with gpu_sampler(self.cuda, self.folder / f"{name}.smi.csv") as sampled:
            result = run_study(ROOT / study, storage, name, 0, str(fuse), [
                "--data-root", self.data_root, "--timeout", f"{int(timeout)}s",
                "--set", f"trainer.device={self.device}", *extra])
        return {**result, **sampled}


@contextmanager
def gpu_sampler(cuda: bool, log: Path) -> Iterator[dict[str, Any]]:
    """Mean GPU utilisation and peak memory while the block runs (nvidia-smi every 200 ms)."""
    sampled: dict[str, Any] = {}
    if not cuda:
        yield sampled
        return
    with log.open("w") as out:
        process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                    "--format=csv,noheader,nounits", "-lms", "200"],
                                   stdout=out, stderr=subprocess.DEVNULL)
        try:
            yield sampled
        finally:
            process.terminate()
            process.wait()
    lines = [line.split(",") for line in log.read_text().splitlines() if line]
    busy = [float(u) for u, _ in lines]
    if busy:
        sampled["gpu_util"] = statistics.mean(busy)
        sampled["gpu_memory_mb"] = max(float(m) for _, m in lines)


def step_tests(check: Check) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-m", "not slow", *check.sizes.tests], cwd=ROOT, text=True,
                          capture_output=True, timeout=check.budget("tests"))
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    check.add("tests", "trainer tests (device: auto)", summary)
    if done.returncode != 0:
        failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
        raise RuntimeError("; ".join(failed[:5]) or summary)


def step_trainer_speed(check: Check) -> None:
    import trainer_speed

    root = trainer_speed.extracted_root(Path(check.data_root))
    shape = (check.sizes.speed_examples, check.sizes.speed_examples // 4, 3, 128, 2, 128,
             check.device)
    base = statistics.median(trainer_speed.baseline_epochs(root, *shape))
    ours, load = trainer_speed.tunecli_epochs(root, *shape)
    check.add("trainer_speed", f"s/epoch, DataLoader / tunecli ({shape[0]} examples, MLP "
              "2x128, batch 128)", f"{base:.3f} / {statistics.median(ours):.3f} = "
              f"{base / statistics.median(ours):.1f}x (tensors made in {load:.2f} s)")


FUSED_STUDIES = (("digits MLP", "studies/digits.yaml", ()),
                 ("Fashion MLP", "studies/fashion-mnist.yaml", ("fashion",)),
                 ("digits CNN", "studies/digits-cnn.yaml", ()))


def step_fused(check: Check) -> None:
    sizes = check.sizes
    studies = FUSED_STUDIES[:sizes.fused_studies]
    each = check.budget("fused") / (len(studies) * (1 + len(sizes.groups)))
    for label, study, needs in studies:
        common = ["--set", f"trainer.epochs={sizes.epochs}", "--set", "budget.timeout=null"]
        if "fashion" in needs:
            common += ["--set", f"trainer.dataset.max_train_samples={sizes.fashion_samples}"]
        slug = label.replace(" ", "-").lower()
        alone = check.search(study, f"{slug}-alone", *common,
                             "--n-trials", str(sizes.alone_trials), timeout=each)
        check.add("fused", f"{label}: one at a time", _described(alone))
        for k in sizes.groups:
            # the sampler's startup trials run alone; two full groups follow them
            fused = check.search(study, f"{slug}-{k}", *common,
                                 "--n-trials", str(2 * k + 5), fuse=k, timeout=each)
            check.add("fused", f"{label}: groups of {k}",
                      f"{_described(fused)}; {fused['per_minute'] / alone['per_minute']:.1f}x "
                      "the trials/min")


def _described(result: dict[str, Any]) -> str:
    text = (f"{result['trials']} trials, {result['per_minute']:.0f}/min, best "
            f"{result['best']:.4f}")
    if "gpu_util" in result:
        text += f", GPU {result['gpu_util']:.0f}% busy, {result['gpu_memory_mb']:.0f} MB peak"
    return text


def step_measures(check: Check) -> None:
    from tunecli.spec import TrainerSpec
    from tunecli.trainer.measures import measure_config

    names = {"latency_ms", "peak_memory_mb"}
    for label, trainer, params in (
            ("MLP 2x512, batch 256", {"model": "mlp"}, {"width": 512, "batch_size": 256}),
            ("CNN 2 blocks x 32, batch 128", {"model": "cnn"}, {"batch_size": 128})):
        spec = TrainerSpec.model_validate({**trainer, "dataset": "digits",
                                           "device": check.device})
        got = measure_config(spec, params, names)
        check.add("measures", f"{label} on {check.device}",
                  f"latency {got['latency_ms']:.3f} ms, peak memory "
                  f"{got['peak_memory_mb']:.1f} MB")


def step_trials_per_device(check: Check) -> None:
    each = check.budget("trials_per_device") / 2
    rates = {}
    for n in (1, 2):
        placement = (["--devices", "0", "--trials-per-device", str(n)] if check.cuda
                     else ["--workers", str(n)])
        result = check.search("studies/digits.yaml", f"per-device-{n}", *placement,
                              "--n-trials", str(4 * check.sizes.alone_trials),
                              "--set", f"trainer.epochs={check.sizes.epochs}",
                              timeout=each)
        rates[n] = result["per_minute"]
        where = "trials per GPU" if check.cuda else "workers on the CPU"
        check.add("trials_per_device", f"digits MLP, {n} {where}",
                  _described(result) + (f"; {rates[n] / rates[1]:.1f}x" if n > 1 else ""))


def step_vs_plain(check: Check) -> None:
    import vs_plain_optuna as vs

    sizes = check.sizes
    samples = sizes.fashion_samples
    plain = vs.best_so_far(vs.plain(check.data_root, 0, sizes.plain_trials, sizes.plain_epochs,
                                    samples, check.device))
    ours = vs.best_so_far(vs.tunecli_search(check.data_root, 0, sizes.plain_trials,
                                            sizes.plain_epochs, samples, check.folder,
                                            device=check.device))
    figures = vs.summary([{"seed": 0, "plain": plain, "tunecli": ours}])
    seed = figures["seeds"][0]
    check.add("vs_plain", f"seed 0, {sizes.plain_trials} trials x {sizes.plain_epochs} epochs, "
              f"{samples} images: time to the plain search's best {figures['target']:.4f}",
              f"plain {seed['to_plain']:.1f} s of {seed['wall']:.1f} s, tunecli "
              f"{seed['to_tunecli']:.1f} s = {seed['of_wall']:.2f} of plain's wall time; final "
              f"best {seed['final'][0]:.4f} / {seed['final'][1]:.4f}")


STEPS: dict[str, Callable[[Check], None]] = {
    "tests": step_tests, "trainer_speed": step_trainer_speed, "fused": step_fused,
    "measures": step_measures, "trials_per_device": step_trials_per_device,
    "vs_plain": step_vs_plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"),
                        help="a torchvision root with FashionMNIST/raw")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--steps", nargs="+", choices=tuple(STEPS), default=list(STEPS))
    args = parser.parse_args()
    check = Check(args)
    print(f"gpu_check on {check.machine} (torch {check.torch}), limit "
          f"{check.sizes.limit_s:.0f} s", flush=True)
    for name in args.steps:
        print(f"{name} ...", flush=True)
        try:
            STEPS[name](check)
        except (Exception, SystemExit) as error:  # a failed step is a finding; go on
            check.errors[name] = f"{type(error).__name__}: {error}"
            check.add(name, "FAILED", check.errors[name].splitlines()[0][:300])
            traceback.print_exc()
    seconds = time.perf_counter() - check.started
    shutil.rmtree(check.folder, ignore_errors=True)
    args.out.write_text(json.dumps({
        "machine": check.machine, "torch": check.torch, "device": check.device,
        "seconds": round(seconds, 1), "errors": check.errors,
        "rows": [row.__dict__ for row in check.rows]}, indent=1))
    print("\n| step | measurement | value |\n|---|---|---|")
    for row in check.rows:
        print(f"| {row.step} | {row.what} | {_cell(row.value)} |")
    print(f"\n{check.machine}, torch {check.torch}: {seconds:.0f} s; results in {args.out}")
    sys.exit(1 if check.errors else 0)


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "/")


if __name__ == "__main__":
    main()
