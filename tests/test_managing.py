"""Study management: delete (asks first) and copy (in the same storage or to another)."""

from __future__ import annotations

from pathlib import Path

import optuna

from tests.conftest import finished, stored
from tunecli.cli import app


def test_delete_asks_first_and_removes_trials_and_checkpoints(cli, write_study,
                                                              tmp_path: Path) -> None:
    assert cli("search", write_study(), "--n-trials", "2").exit_code == 0
    kept = cli.runner.invoke(app, ["delete", "tiny"], input="n\n")
    assert kept.exit_code == 1 and "Nothing deleted" in kept.output
    assert finished(stored()) == 2
    gone = cli("delete", "tiny", "--yes")
    assert gone.exit_code == 0 and "deleted study 'tiny'" in gone.output
    assert "tiny" not in optuna.get_all_study_names("sqlite:///tunecli.db")
    assert not (tmp_path / ".tunecli" / "tiny").exists()
    assert cli("delete", "tiny", "--yes").exit_code == 2  # no such study


def test_copy_to_another_storage_keeps_every_trial_and_the_spec(cli, write_study,
                                                                tmp_path: Path) -> None:
    assert cli("search", write_study(), "--n-trials", "3").exit_code == 0
    result = cli("copy", "tiny", "tiny-copy", "--to-storage", "other.db")
    assert result.exit_code == 0, result.output
    copied = stored("sqlite:///other.db", "tiny-copy")
    assert [t.params for t in copied] == [t.params for t in stored()]
    # the copy is a whole tunecli study: it reports and resumes like the original
    assert cli("report", "tiny-copy", "--storage", "other.db").exit_code == 0
    assert cli("resume", "tiny-copy", "--storage", "other.db", "--n-trials", "4").exit_code == 0
    assert finished(stored("sqlite:///other.db", "tiny-copy")) == 4
    clash = cli("copy", "tiny", "tiny-copy", "--to-storage", "other.db")
    assert clash.exit_code == 2 and "already exists" in clash.output

