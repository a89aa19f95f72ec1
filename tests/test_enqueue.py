"""Known configurations first: search --enqueue FILE."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tests.conftest import stored

CONFIGS = """\
- {lr: 0.01, width: 16, optimizer: adam}
- {lr: 0.05, width: 24, optimizer: sgd, momentum: 0.8}
"""


def test_enqueued_configurations_run_first_and_once(cli, write_study, tmp_path: Path) -> None:
    (tmp_path / "known.yaml").write_text(CONFIGS)
    result = cli("search", write_study(), "--n-trials", "3", "--enqueue", "known.yaml")
    assert result.exit_code == 0, result.output
    assert "queued 2 of 2 configurations" in result.output
    trials = stored()
    assert trials[0].params == {"lr": 0.01, "width": 16, "optimizer": "adam"}
    assert trials[1].params == {"lr": 0.05, "width": 24, "optimizer": "sgd", "momentum": 0.8}
    assert trials[0].user_attrs["enqueued"] and "enqueued" not in trials[2].user_attrs
    again = cli("search", write_study(), "--n-trials", "4", "--enqueue", "known.yaml")
    assert "queued 0 of 2" in again.output and len(stored()) == 4


@pytest.mark.parametrize("text,words", [
    ("{lr: 5.0}", "lr: 5.0 is outside the space. Give in [0.001, 0.1]"),
    ("- {lrr: 0.01}", "[0].lrr: 'lrr' is not a searched parameter"),
    ("- {optimizer: adamw}", "outside the space. Give one of ['adam', 'sgd']"),
    ("- {width: 12.5}", "Give a whole number"),
    ("- 3", "must be a mapping"),
])
def test_a_bad_configuration_stores_nothing(cli, write_study, tmp_path: Path, text: str,
                                            words: str) -> None:
    (tmp_path / "known.yaml").write_text(text)
    result = cli("search", write_study(), "--enqueue", "known.yaml")
    assert result.exit_code == 2, result.output
    assert words in result.output and "known.yaml" in result.output
    db = tmp_path / "tunecli.db"
    assert not db.exists() or not optuna.get_all_study_names(f"sqlite:///{db}")
