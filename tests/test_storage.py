"""Storage URLs: what a bare path means, passwords never shown, files never made by readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from sqlalchemy.exc import OperationalError

from tunecli import attrs
from tunecli.engine.store import storage
from tunecli.errors import SpecError


@pytest.mark.parametrize(("given", "url"), [
    (None, "sqlite:///tunecli.db"),
    ("runs.db", "sqlite:///runs.db"),
    ("runs.sqlite3", "sqlite:///runs.sqlite3"),
    ("runs.journal", "journal:runs.journal"),
    ("postgresql://u:p@h/db", "postgresql://u:p@h/db"),
])
def test_resolve_url(given: str | None, url: str) -> None:
    assert storage.resolve_url(given) == url


def test_the_option_wins_over_the_environment_and_the_file(monkeypatch) -> None:
    monkeypatch.setenv("TUNECLI_STORAGE", "env.db")
    assert storage.resolve_url("option.db", "file.db") == "sqlite:///option.db"
    assert storage.resolve_url(None, "file.db") == "sqlite:///env.db"


def test_a_path_without_a_storage_suffix_is_refused() -> None:
    with pytest.raises(SpecError, match=r"results\.db"):
        storage.resolve_url("results.txt")


def test_passwords_are_masked_and_files_shown_absolute(tmp_path: Path) -> None:
    assert storage.mask("see postgresql://me:s3cret@host/db") == "see postgresql://me:***@host/db"
    assert storage.describe("sqlite:///tunecli.db") == f"sqlite:///{tmp_path / 'tunecli.db'}"
    assert storage.local_file("postgresql://u:p@h/db") is None


def test_a_reader_never_creates_a_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no storage at"):
        storage.open_storage("sqlite:///missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    storage.open_storage("sqlite:///made.db")  # a search may
    assert (tmp_path / "made.db").exists()


def test_checkpoints_live_beside_a_file_storage(tmp_path: Path) -> None:
    assert storage.study_folder("sqlite:///sub/x.db", "s") == tmp_path / "sub" / ".tunecli" / "s"
    assert storage.study_folder("postgresql://h/db", "s") == tmp_path / ".tunecli" / "s"


def _failing_once(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """RDBStorage fails its first opening as a restarting server does; the calls are listed."""
    import optuna
    from sqlalchemy.exc import OperationalError

    real, calls = optuna.storages.RDBStorage, []

    def opening(url: str, **kwargs: object) -> object:
        calls.append(url)
        if len(calls) == 1:
            raise OperationalError("connect", {}, Exception("the database system is starting up"))
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", opening)
    monkeypatch.setattr(storage, "RETRY_WAITS", (0.0,))
    return calls


def test_a_server_reached_before_is_waited_for_while_it_restarts(tmp_path: Path, monkeypatch,
                                                                 capsys) -> None:
    url = f"sqlite:///{tmp_path / 'restarting.db'}"
    monkeypatch.setattr(storage, "_REACHED", {url})
    calls = _failing_once(monkeypatch)
    storage.open_storage(url, heartbeat=False)
    assert len(calls) == 2
    assert "lost the connection" in capsys.readouterr().err


def test_a_server_never_reached_fails_at_once(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    monkeypatch.setattr(storage, "_REACHED", set())
    calls = _failing_once(monkeypatch)
    with pytest.raises(SpecError, match="starting up"):
        storage.open_storage(url, heartbeat=False)
    assert len(calls) == 1


class _LostReplies(optuna.storages.InMemoryStorage):
    """A storage whose chosen writes land and then lose their reply once, as a connection
    dropped between the commit and its answer; ``twice`` creates a trial twice, as a storage
    that retried its own lost commit does."""

    def __init__(self, lose: set[str], twice: bool = False) -> None:
        super().__init__()
        self.lose, self.twice = lose, twice

    def _lost(self, name: str) -> None:
        if name in self.lose:
            self.lose.discard(name)
            raise OperationalError("commit", {}, Exception("server closed the connection"))

    def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
        if self.twice:
            self.twice = False
            super().create_new_trial(study_id, template_trial)
        trial_id = super().create_new_trial(study_id, template_trial)
        self._lost("create_new_trial")
        return trial_id

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        written = super().set_trial_state_values(trial_id, state, values)
        self._lost("set_trial_state_values")
        return written


@pytest.mark.parametrize("twice", [False, True])
def test_a_retried_create_or_state_write_stores_it_once(monkeypatch, twice: bool) -> None:
    monkeypatch.setattr(storage, "RETRY_WAITS", (0.0,))
    inner = _LostReplies({"create_new_trial", "set_trial_state_values"}, twice=twice)
    study = optuna.create_study(storage=storage.Reconnecting(inner, "test://",
                                                             copies_inside=True))
    trial = study.ask()
    study.tell(trial, 0.5)  # its reply lost: the retry finds it written, not finished by another
    queued = study.enqueue_trial({"x": 1.0}) or study.trials[-1]
    trials = study.get_trials()
    counted = [t for t in trials if not t.user_attrs.get(attrs.SURPLUS)]
    assert [(t.state.name, t.value) for t in counted] == [("COMPLETE", 0.5), ("WAITING", None)]
    claims = [t.system_attrs[attrs.CLAIM] for t in counted]
    assert len(set(claims)) == 2 and queued.system_attrs["fixed_params"] == {"x": 1.0}
    # the storage's own retry made a copy: never trained, never counted, said as surplus
    assert [t.state.name for t in trials if t.user_attrs.get(attrs.SURPLUS)] == \
        (["FAIL"] if twice else [])


def test_a_process_that_loses_the_race_to_create_a_new_database_opens_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers started together on a new SQLite file: the second creation of its version
    row fails; opening again finds the tables the other process made."""
    made = storage._database
    tries: list[str] = []

    def lose_once(url: str, *args: Any) -> Any:
        tries.append(url)
        made(url, *args)  # the other process's creation
        if len(tries) == 1:
            raise RuntimeError("(sqlite3.IntegrityError) UNIQUE constraint failed: "
                               "alembic_version.version_num")
        return made(url, *args)

    monkeypatch.setattr(storage, "_database", lose_once)
    url = f"sqlite:///{tmp_path / 'new.db'}"
    opened = storage.open_storage(url)
    assert len(tries) == 2 and optuna.create_study(storage=opened, study_name="s").trials == []
