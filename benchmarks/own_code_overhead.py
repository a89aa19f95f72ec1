"""What tunecli adds per trial to your own code, measured in one run against the same code run
without it.

- command: 10 trials of a program that works for 1 second and prints one JSON line, run by
  ``tunecli search`` (one process per trial) against the same 10 runs one after another by hand.
- function: 10 trials of a function that reports 5 epochs of 20 ms each, through
  ``tunecli.api.search`` against 10 plain calls with a reporter that does nothing.

Usage: python benchmarks/own_code_overhead.py [--trials 10] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PROGRAM = textwrap.dedent('''\
    import json, sys, time
    time.sleep(float(sys.argv[1]))
    print(json.dumps({"epoch": 1, "val_accuracy": float(sys.argv[2])}))
''')

FUNCTION = textwrap.dedent('''\
    import time

    def train(params, trial):
        for epoch in range(1, 6):
            time.sleep(0.02)
            trial.report(epoch, val_accuracy=params["x"] * epoch / 5)
''')

STUDY = textwrap.dedent('''\
    name: {name}
    metric: val_accuracy
    trainer:
      {trainer}
      epochs: {epochs}
    space:
      x: {{float: [0.0, 1.0]}}
    sampler: {{type: random, seed: 0}}
    pruner: {{type: none}}
    budget: {{n_trials: {trials}}}
''')


class _Quiet:
    def report(self, epoch: int, **metrics: float) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tunecli-own-code-"))
    (folder / "prog.py").write_text(PROGRAM)
    (folder / "mine.py").write_text(FUNCTION)
    tunecli = [sys.executable, "-c", "from tunecli.cli import main; main()"]

    started = time.perf_counter()
    for _ in range(args.trials):
        subprocess.run([sys.executable, "prog.py", str(args.seconds), "0.5"], cwd=folder,
                       check=True, capture_output=True)
    by_hand = time.perf_counter() - started

    study = folder / "command.yaml"
    study.write_text(STUDY.format(name="command", epochs=1, trials=args.trials,
                                  trainer=f'command: "python prog.py {args.seconds} {{x}}"'))
    started = time.perf_counter()
    subprocess.run([*tunecli, "search", str(study), "--storage", f"sqlite:///{folder}/c.db"],
                   cwd=folder, check=True, capture_output=True)
    searched = time.perf_counter() - started

    sys.path.insert(0, str(folder))
    import mine  # type: ignore[import-not-found]

    started = time.perf_counter()
    for i in range(args.trials):
        mine.train({"x": i / args.trials}, _Quiet())
    called = time.perf_counter() - started

    from tunecli import api

    fn_study = folder / "function.yaml"
    fn_study.write_text(STUDY.format(name="function", epochs=5, trials=args.trials,
                                     trainer="function: mine.py:train"))
    started = time.perf_counter()
    api.search(fn_study, storage=f"sqlite:///{folder}/f.db", progress=False)
    through_api = time.perf_counter() - started

    n = args.trials
    command_span = _span(f"sqlite:///{folder}/c.db", "command")
    function_span = _span(f"sqlite:///{folder}/f.db", "function")
    print(f"command: {n} runs by hand {by_hand:.2f} s; tunecli search {searched:.2f} s in all "
          f"(start-up and report included), {command_span:.2f} s from the first trial's start "
          f"to the last one's end: {(command_span - by_hand) / n * 1000:.0f} ms a trial "
          f"({command_span / by_hand:.3f}x)")
    print(f"function: {n} plain calls {called:.2f} s; api.search {through_api:.2f} s in all, "
          f"{function_span:.2f} s first start to last end: "
          f"{(function_span - called) / n * 1000:.0f} ms a trial "
          f"({function_span / called:.3f}x)")


def _span(url: str, name: str) -> float:
    """Seconds from the first trial's start to the last trial's end, as stored."""
    import optuna

    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    return (end - start).total_seconds()


if __name__ == "__main__":
    main()
