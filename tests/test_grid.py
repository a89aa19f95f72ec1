"""Grid points never repeat, under any concurrency: each point waits in the study's queue once,
and the storage hands each waiting trial to one worker."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import grid_study

GRID_POINTS = 8  # grid_study(widest=11): lr 2 values x width 8..11


def _worker(url: str, start: object) -> None:
    """What a search process does per trial, without training: ask, claim, tell."""
    from tunecli.engine.search import studies as study_module
    from tunecli.engine.search.budget import Surplus, take_slot
    from tunecli.engine.strategy.grid_queue import grid_exhausted
    from tunecli.engine.strategy.space import suggest

    study, spec = study_module.load("tiny", url)
    start.wait()  # type: ignore[attr-defined]  # all three ask at once
    while not grid_exhausted(study):
        trial = study.ask()
        try:
            take_slot(trial, spec)
            suggest(trial, spec.space)
        except Surplus:
            study.tell(trial, state=TrialState.FAIL)
            continue
        study.tell(trial, 0.5)


def _create(url: str, study_file: Path) -> None:
    from tunecli import spec as spec_module
    from tunecli.engine.search import studies as study_module

    study_module.open_for_search(spec_module.load(study_file), url, str(study_file))


def _run_in_processes(target, *args) -> list[int]:  # type: ignore[no-untyped-def]
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=target, args=args) for _ in range(1 if target is _create
                                                                      else 3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    return [proc.exitcode for proc in procs]  # type: ignore[misc]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "repetitions"), [("sqlite", 20), ("journal", 5)])
def test_three_processes_never_draw_a_grid_point_twice(tmp_path: Path, kind: str,
                                                       repetitions: int) -> None:
    study_file = tmp_path / "grid.yaml"
    study_file.write_text(grid_study(widest=11).replace("n_trials: 6", "n_trials: 50"))
    context = multiprocessing.get_context("fork")
    for repetition in range(repetitions):
        url = (f"sqlite:///{tmp_path}/grid-{repetition}.db" if kind == "sqlite"
               else f"journal:{tmp_path}/grid-{repetition}.journal")
        assert _run_in_processes(_create, url, study_file) == [0]
        start = context.Barrier(3)
        assert _run_in_processes(_worker, url, start) == [0, 0, 0]
        storage = (url if kind == "sqlite" else optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(url.removeprefix("journal:"))))
        trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
        points = [(t.params["lr"], t.params["width"]) for t in trials
                  if t.state == TrialState.COMPLETE]
        assert len(points) == GRID_POINTS, (repetition, points)
        assert len(set(points)) == GRID_POINTS, (repetition, points)
        assert not [t for t in trials if t.state == TrialState.WAITING]


def test_a_new_grid_study_queues_each_point_once_and_conditionals_fold(tmp_path: Path) -> None:
    from tunecli import spec as spec_module
    from tunecli.engine.strategy import grid_queue

    text = grid_study(widest=9) + "  optimizer: {choice: [adam, sgd]}\n" \
        "  momentum: {choice: [0.5, 0.9], when: {optimizer: sgd}}\n"
    (tmp_path / "g.yaml").write_text(text)
    spec = spec_module.load(tmp_path / "g.yaml")
    points = grid_queue.grid_points(spec)
    # lr 2 x width 2 x (adam, sgd with 2 momenta): 12 configurations, none twice
    assert len(points) == 12 == len({tuple(sorted(p.items())) for p in points})
    assert all(("momentum" in p) == (p["optimizer"] == "sgd") for p in points)
    _create(f"sqlite:///{tmp_path}/g.db", tmp_path / "g.yaml")
    waiting = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/g.db"
                                ).get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 12
