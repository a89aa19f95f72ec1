"""Fused trials through the CLI: each member is a whole Optuna trial (budget, pruning, reports,
resume after kill -9, workers), every sampler gives a group distinct configurations, and
fusion is chosen (or not) with a reason the user can read."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY_STUDY, finished, stored, tunecli_command, with_sampler
from test_search_state import kill_and_wait

from tunecli.engine.strategy.samplers import SAMPLER_FACTORIES as SAMPLERS

# Fused rounds begin after the sampler's startup trials: none here, so trial 0 is fused.
FUSED = TINY_STUDY.replace("epochs: 3", "epochs: 2").replace(
    "trainer:\n", "trainer:\n  fuse: 4\n").replace("n_startup_trials: 3", "n_startup_trials: 0")


def groups(trials: list) -> list[set[int]]:
    """The fused groups' members (a group refilled as members leave holds more than K)."""
    found: dict[int, set[int]] = {}
    for t in trials:
        if t.user_attrs.get("fused_with"):
            found.setdefault(t.user_attrs["fused_group"], set()).add(t.number)
    return sorted(found.values(), key=min)


def test_members_are_whole_trials_and_the_budget_is_exact(cli, write_study) -> None:
    path = write_study(FUSED.replace("n_trials: 6", "n_trials: 7"))
    result = cli("search", path)
    assert result.exit_code == 0, result.output
    assert "fused trials: up to 4 configurations" in result.output
    assert "(fused x4: trials 0-3)" in result.output
    trials = stored()
    assert finished(trials) == 7 and len(trials) == 7  # no surplus, nothing waiting
    found = groups(trials)
    assert found[0] == {0, 1, 2, 3} and found[1] == {4, 5, 6}
    for group in found:
        members = [t for t in trials if t.number in group]
        # one structure per group (the study's two starting points, queued before the
        # round, keep their own widths), each member its own configuration
        anchored = [t for t in members if not {"defaults", "center"} & set(t.user_attrs)]
        assert len({(t.params["optimizer"], t.params["width"]) for t in anchored}) == 1
        assert len({t.params["lr"] for t in members}) == len(members)
        for t in members:
            assert t.state.name in ("COMPLETE", "PRUNED")
            assert len(t.intermediate_values) == t.user_attrs.get("epochs_run",
                                                                  len(t.intermediate_values))
    report = cli("report", "tiny", "--format", "json")
    data = json.loads(report.output)
    assert data["fused"] == {"trials": 7, "groups": 2, "largest": 4}
    assert sorted(data["trials"][0]["fused_with"]) == [1, 2, 3]
    assert [t["fused_group"] for t in data["trials"]] == [0, 0, 0, 0, 4, 4, 4]
    assert "fused: 7 trials trained in 2 groups of up to 4" in cli("report", "tiny").output


def test_a_group_is_refilled_as_members_are_pruned(cli, write_study) -> None:
    """K = 2 and a pruner that stops half the trials after epoch 1: new trials of the group's
    structure take the freed slots, so a group holds more than K trials but never trains more
    than K at once, and the budget is still exact."""
    text = (FUSED.replace("fuse: 4", "fuse: 2").replace("n_trials: 6", "n_trials: 9")
            .replace("epochs: 2", "epochs: 4")
            .replace("n_startup_trials: 2, min_epochs: 1", "n_startup_trials: 1, min_epochs: 1"))
    result = cli("search", write_study(text))
    assert result.exit_code == 0, result.output
    trials = stored()
    assert finished(trials) == 9 and len(trials) == 9
    assert any(t.state.name == "PRUNED" for t in trials)
    found = groups(trials)
    assert max(len(group) for group in found) > 2, found
    for group in found:
        anchored = [t for t in trials if t.number in group
                    and not {"defaults", "center"} & set(t.user_attrs)]
        assert len({(t.params["optimizer"], t.params["width"]) for t in anchored}) <= 1
    for t in trials:
        together = [epoch["fused_members"] for epoch in t.user_attrs.get("history", [])
                    if "fused_members" in epoch]
        assert all(1 <= n <= 2 for n in together), (t.number, together)
    report = json.loads(cli("report", "tiny", "--format", "json").output)
    assert report["fused"]["trials"] == sum(len(group) for group in found)
    assert report["fused"]["groups"] == len(found)


# TINY_STUDY's name, budget and sampler (no startup trials: fused from trial 0), no pruner.
CNN_STUDY = TINY_STUDY.split("trainer:")[0].replace(
    "n_startup_trials: 3", "n_startup_trials: 0").replace(
    "{type: median, n_startup_trials: 2, min_epochs: 1}", "{type: none}") + """\
trainer:
  dataset: {name: digits, max_train_samples: 300}
  model: cnn
  epochs: 2
  fuse: auto
space:
  lr: {float: [1.0e-3, 1.0e-1], log: true}
  channels: {int: [2, 6]}
  classifier_width: {int: [8, 16]}
  kernel_size: 3
  optimizer: {choice: [adam, sgd]}
"""


def test_auto_fuses_a_small_cnn(cli, write_study) -> None:
    """The built-in cnn fuses too (grouped convolutions): a round's members share its
    structure, channels and classifier width; each is a whole trial."""
    result = cli("search", write_study(CNN_STUDY))
    assert result.exit_code == 0, result.output
    assert "fused trials: up to 8 configurations" in result.output
    trials = stored()
    assert finished(trials) == 6 and len(trials) == 6
    found = groups(trials)
    assert found and max(len(group) for group in found) >= 3
    for group in found:
        anchored = [t for t in trials if t.number in group
                    and not {"defaults", "center"} & set(t.user_attrs)]
        assert len({(t.params["optimizer"], t.params["channels"],
                     t.params["classifier_width"]) for t in anchored}) <= 1
    assert all(len(t.intermediate_values) == 2 for t in trials)


def test_fuse_1_trains_one_at_a_time(cli, write_study) -> None:
    result = cli("search", write_study(FUSED), "--fuse", "1")
    assert result.exit_code == 0, result.output
    assert "fused" not in result.output
    assert not groups(stored())


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n not in ("grid", "gp")])
def test_every_sampler_gives_a_group_distinct_configurations(cli, write_study,
                                                             name: str) -> None:
    path = write_study(with_sampler(FUSED, name).replace("n_trials: 6", "n_trials: 8"))
    assert cli("search", path).exit_code == 0
    trials = stored()
    assert finished(trials) == 8
    configs = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(configs)) == 8, configs
    assert max(len(group) for group in groups(trials)) >= 4  # K = 4, refilled as trials leave


def test_a_user_model_trains_alone_with_a_reason(cli, write_study, tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(
        "import torch\n\ndef build(params, shape, n_out):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, n_out))\n")
    text = FUSED.replace("model: mlp", "model: net.py:build").replace(
        "  width: {int: [8, 32]}\n", "").replace("fuse: 4", "fuse: auto")
    result = cli("search", write_study(text), "--n-trials", "3")
    assert result.exit_code == 0, result.output
    assert "trials train one at a time: model 'net.py:build'" in result.output
    assert not groups(stored())


USER_MODELS = Path(__file__).parent / "user_models.py"


def user_study(function: str) -> str:
    """FUSED with one of tests/user_models.py's models (``hidden`` is its own setting)."""
    return FUSED.replace("model: mlp", f"model: {USER_MODELS}:{function}").replace(
        "  width: {int: [8, 32]}\n", "  hidden: {choice: [8, 16]}\n")


def test_a_user_model_fuses_through_torch_func_when_asked(cli, write_study) -> None:
    result = cli("search", write_study(user_study("build")), "--n-trials", "6")
    assert result.exit_code == 0, result.output
    assert "fused trials: up to 4 configurations" in result.output
    assert "one at a time" not in result.output
    trials = stored()
    assert finished(trials) == 6 and len(trials) == 6
    found = groups(trials)
    assert found and max(len(group) for group in found) >= 2
    for group in found:
        members = [t for t in trials if t.number in group]
        anchored = [t for t in members if not {"defaults", "center"} & set(t.user_attrs)]
        assert len({(t.params["hidden"], t.params["optimizer"]) for t in anchored}) == 1
        assert len({t.params["lr"] for t in members}) == len(members)


def test_a_user_model_torch_func_cannot_run_trains_alone_saying_why_once(cli, write_study
                                                                        ) -> None:
    result = cli("search", write_study(user_study("with_dropout")), "--n-trials", "6")
    assert result.exit_code == 0, result.output
    assert result.output.count("trials train one at a time") == 1, result.output
    assert "cannot be fused through torch.func (it draws random numbers" in result.output
    trials = stored()
    assert finished(trials) == 6 and len(trials) == 6
    assert not groups(trials)


def test_auto_fuses_small_models_and_leaves_wide_ones_alone(cli, write_study) -> None:
    small = FUSED.replace("fuse: 4", "fuse: auto")
    assert cli("search", write_study(small), "--n-trials", "4").exit_code == 0
    assert groups(stored()) == [{0, 1, 2, 3}]
    wide = small.replace("width: {int: [8, 32]}", "width: {int: [4000, 4096]}")
    result = cli("search", write_study(wide, "wide.yaml"), "--n-trials", "2", "--name", "wide")
    assert result.exit_code == 0, result.output
    assert not groups(stored(name="wide"))
    # Said for the first such round only: the space rules fusion out, not one trial.
    assert result.output.count("trains alone: its model does") == 1, result.output
    assert "past the 4.0M up to which fused groups train faster on the CPU" in result.output


def test_a_bad_fuse_is_caught_before_anything_runs(cli, write_study) -> None:
    result = cli("search", write_study(FUSED), "--fuse", "0")
    assert result.exit_code == 2
    assert "trainer.fuse: 0 is not a fuse size" in result.output
    assert not Path("tunecli.db").exists()


def test_workers_fuse_and_meet_the_budget_exactly(write_study, subprocess_env) -> None:
    path = write_study(FUSED.replace("n_trials: 6", "n_trials: 10"))
    result = subprocess.run([*tunecli_command(), "search", str(path), "--workers", "2"],
                            capture_output=True, text=True, env=subprocess_env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = stored()
    assert finished(trials) == 10
    assert [t for t in trials if t.state.name == "FAIL" and not t.user_attrs.get("surplus")
            ] == []
    assert groups(trials)


def test_kill_9_inside_a_group_loses_no_finished_member(cli, write_study,
                                                        subprocess_env) -> None:
    """A first group finishes; a resume's group is killed while it trains. The next resume
    retries the lost members and ends with exactly n_trials; the finished ones are kept."""
    text = (FUSED.replace("n_trials: 6", "n_trials: 4").replace("epochs: 2", "epochs: 150")
            .replace("type: median, n_startup_trials: 2", "type: none, n_startup_trials: 2")
            .replace("n_samples: 300", "n_samples: 200"))
    assert cli("search", write_study(text)).exit_code == 0
    before = {t.number: t.value for t in stored() if t.state.name == "COMPLETE"}
    assert sorted(before) == [0, 1, 2, 3]
    proc = subprocess.Popen([*tunecli_command(), "resume", "tiny", "--n-trials", "8"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=subprocess_env)
    study = optuna.load_study(study_name="tiny", storage="sqlite:///tunecli.db")
    deadline = time.time() + 300
    try:
        while True:  # the observable moment: every member of the second group has trained
            assert proc.poll() is None, "the resume ended before its group was seen training"
            assert time.time() < deadline
            second = [t for t in study.get_trials(deepcopy=False) if t.number >= 4
                      and t.state.name == "RUNNING" and t.intermediate_values]
            if len(second) == 4:
                break
            time.sleep(0.005)
    finally:
        kill_and_wait(proc.pid)
    assert {t.number for t in stored() if t.state.name == "RUNNING"} == {4, 5, 6, 7}
    resumed = subprocess.run([*tunecli_command(), "resume", "tiny"], capture_output=True,
                             text=True, env=subprocess_env, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = stored()
    assert finished(trials) == 8
    assert {t.number: t.value for t in trials if t.number in before} == before
    retries = [t for t in trials if "retry_of" in t.user_attrs]
    assert sorted(t.user_attrs["retry_of"] for t in retries) == [4, 5, 6, 7]
    lost = {t.number: t.params for t in trials if 4 <= t.number <= 7}
    for t in retries:
        assert t.params == lost[t.user_attrs["retry_of"]]
        assert t.state.name == "COMPLETE" and len(t.intermediate_values) == 150


def test_kill_9_inside_a_refilled_group_loses_no_finished_member(write_study,
                                                                  subprocess_env) -> None:
    """K = 2 under a pruner: kill -9 once a trial that joined a running group (a refill) has
    trained; the resume retries what was lost, keeps what finished, ends at exactly n_trials."""
    text = (FUSED.replace("fuse: 4", "fuse: 2").replace("n_trials: 6", "n_trials: 10")
            .replace("epochs: 2", "epochs: 60").replace("n_samples: 300", "n_samples: 200")
            .replace("n_startup_trials: 2, min_epochs: 1", "n_startup_trials: 1, min_epochs: 1"))
    path = write_study(text)
    proc = subprocess.Popen([*tunecli_command(), "search", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=subprocess_env)
    deadline = time.time() + 300
    study = None
    try:
        while True:  # the observable moment: a trial that joined a running group has trained
            assert proc.poll() is None, "the search ended before a refilled group was seen"
            assert time.time() < deadline
            trials = []
            with contextlib.suppress(Exception):  # the search may still be creating the file
                study = study or optuna.load_study(study_name="tiny",
                                                   storage="sqlite:///tunecli.db")
                trials = study.get_trials(deepcopy=False)
            # K = 2: a group's first two trials are g and g + 1; later numbers joined by refill
            if any(t.state.name == "RUNNING" and t.intermediate_values
                   and t.number >= t.user_attrs.get("fused_group", t.number) + 2
                   for t in trials):
                break
            time.sleep(0.01)
    finally:
        kill_and_wait(proc.pid)
    before = {t.number: (t.state.name, t.value) for t in stored()
              if t.state.name in ("COMPLETE", "PRUNED")}
    assert {t.number for t in stored() if t.state.name == "RUNNING"}
    resumed = subprocess.run([*tunecli_command(), "resume", "tiny"], capture_output=True,
                             text=True, env=subprocess_env, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = stored()
    assert finished(trials) == 10
    assert {t.number: (t.state.name, t.value) for t in trials if t.number in before} == before
    assert any("retry_of" in t.user_attrs for t in trials)  # what was lost was retried
