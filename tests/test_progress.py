"""Live progress: one line per trial where there is no terminal (CI logs, pipes)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tunecli.reports.live import SearchProgress, format_params


def test_format_params_rounds_floats_and_stops_at_a_limit() -> None:
    assert format_params({"lr": 0.0012345, "depth": 2}) == "lr=0.00123 depth=2"
    assert format_params({f"p{i}": i for i in range(8)}, limit=3) == "p0=0 p1=1 p2=2 …"


def test_trial_lines_without_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with SearchProgress(console, "s", "val_accuracy", 3, None, 0) as progress:
        progress.update({"complete": 1, "pruned": 0, "failed": 0, "lost": 0, "finished": 1},
                        (0.9, {"lr": 0.01}))
        progress.trial_done(0, "complete", 0.91, {"lr": 0.01}, 1.5)
        progress.trial_done(1, "pruned", None, {"lr": 0.1}, 0.5, "after epoch 2")
    text = out.getvalue()
    assert "trial    0 complete val_accuracy=0.9100 lr=0.01 (1.5s)" in text
    assert "trial    1 pruned" in text and "after epoch 2" in text


@pytest.mark.parametrize("fuse", [1, 2])
def test_the_live_display_shows_the_running_trials_epoch_and_metric(tmp_path,
                                                                    fuse: int) -> None:
    from tests.conftest import TINY_STUDY
    from tunecli import spec as spec_module
    from tunecli.api import Opened, run_here
    from tunecli.engine.search import studies as study_module

    path = tmp_path / "s.yaml"
    path.write_text(TINY_STUDY.replace("n_trials: 6", "n_trials: 2")
                    .replace("trainer:\n", f"trainer:\n  fuse: {fuse}\n")
                    .replace("n_startup_trials: 3", "n_startup_trials: 0"))  # fused at once
    spec = spec_module.load(path)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    run_here(Opened(study_module.open_for_search(spec, url, str(path)), spec, url), console)
    screen = out.getvalue()
    # every epoch of both trials was shown (the median pruner never stops its first 2 trials)
    for label in (("trial 0", "trial 1") if fuse == 1 else ("trials 0-1 fused x2",)):
        for epoch in (1, 2, 3):
            assert f"{label} epoch {epoch}/3 val_accuracy=" in screen


PARAMS = {"lr": 0.00123, "batch_size": 64, "depth": 2, "width": 191, "dropout": 0.25,
          "weight_decay": 1e-5, "l1": 1e-7, "optimizer": "rmsprop", "momentum": 0.9}


def test_trial_lines_at_80_and_120_columns_and_in_logs() -> None:
    words = format_params(PARAMS, limit=None).split()
    for width, terminal in ((80, True), (120, True), (80, False)):
        out = io.StringIO()
        console = Console(file=out, force_terminal=terminal, width=width)
        with SearchProgress(console, "s", "val_accuracy", None, None, 0) as progress:
            progress.trial_done(7, "pruned", None, PARAMS, 2.0, "after epoch 3")
        lines = [line for line in out.getvalue().splitlines() if "trial" in line or "=" in line]
        text = " ".join(line.strip() for line in lines)
        for word in words:  # every parameter whole, none cut or broken across lines
            assert word in text.split(), (width, terminal, out.getvalue())
        assert "…" not in out.getvalue()
        if not terminal:
            assert len([x for x in out.getvalue().splitlines() if "trial    7" in x]) == 1


def test_the_parent_of_workers_shows_what_each_worker_trains() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")
    done = study.ask()
    done.report(0.8, 1)
    study.tell(done, 0.8)
    for worker, values in (("hostA:11", [0.5, 0.625]), ("hostA:12", [0.25])):
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        for epoch, value in enumerate(values, start=1):
            trial.report(value, epoch)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    with SearchProgress(console, "s", "val_accuracy", 5, None, 1) as progress:
        progress.workers(study.get_trials(), 20)
    screen = out.getvalue()
    assert "hostA:11: trial 1 epoch 2/20 val_accuracy=0.625" in screen
    assert "hostA:12: trial 2 epoch 1/20 val_accuracy=0.25" in screen
    assert "best val_accuracy=0.8" in screen and "1/5" in screen
