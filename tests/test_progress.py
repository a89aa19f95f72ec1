"""Live progress: one line per trial where there is no terminal (CI logs, pipes)."""

from __future__ import annotations

import io

from rich.console import Console

from tunecli.engine.progress import SearchProgress, format_params


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
