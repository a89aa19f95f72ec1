"""The search space: conditionals, first values, grid points and Optuna distributions."""

from __future__ import annotations

import optuna
import pytest

from tunecli.engine.strategy import space
from tunecli.spec.models import ParamSpec

SPACE = {
    "lr": ParamSpec.model_validate({"float": [1e-4, 1e-1], "log": True}),
    "depth": ParamSpec.model_validate({"int": [1, 4], "step": 1}),
    "optimizer": ParamSpec.model_validate({"choice": ["adam", "sgd"]}),
    "momentum": ParamSpec.model_validate({"float": [0.5, 0.9], "when": {"optimizer": "sgd"}}),
    "batch_size": ParamSpec.model_validate(64),
}


def test_a_conditional_parameter_is_sampled_only_when_its_condition_holds() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        values = space.suggest(trial, SPACE)
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        assert values["batch_size"] == 64 and "batch_size" not in trial.params
        seen.add(values["optimizer"])
        study.tell(trial, 0.0)
    assert seen == {"adam", "sgd"}


def test_first_config_takes_each_low_end_and_first_choice() -> None:
    assert space.first_config(SPACE) == {"lr": 1e-4, "depth": 1, "optimizer": "adam",
                                         "batch_size": 64}


def test_distribution_is_what_suggest_asks_for() -> None:
    study = optuna.create_study()
    trial = study.ask()
    space.suggest(trial, {k: v for k, v in SPACE.items() if k != "momentum"})
    frozen = study.get_trials()[0]
    for name in ("lr", "depth", "optimizer"):
        assert frozen.distributions[name] == space.distribution(SPACE[name])


@pytest.mark.parametrize(("entry", "points", "expected"), [
    ({"int": [1, 8], "step": 2}, 5, [1, 3, 5, 7]),
    ({"float": [0.0, 0.3], "step": 0.1}, 5, [0.0, 0.1, 0.2, 0.3]),
    ({"float": [1e-3, 1e-1], "log": True}, 3, [1e-3, 1e-2, 1e-1]),
    ({"choice": ["a", "b"]}, 5, ["a", "b"]),
])
def test_grid_values(entry: dict, points: int, expected: list) -> None:
    assert space.grid_values(ParamSpec.model_validate(entry), points) == pytest.approx(expected) \
        if not isinstance(expected[0], str) else expected


def test_describe_reads_as_written() -> None:
    assert space.describe(SPACE["lr"]) == "float [0.0001, 0.1] log"
    assert space.describe(SPACE["momentum"]) == "float [0.5, 0.9]  (when optimizer = sgd)"


def test_center_config_is_each_range_middle_and_first_named_choice() -> None:
    entries = {
        "lr": {"float": [1e-5, 1e-1], "log": True},
        "dropout": {"float": [0.0, 0.5], "step": 0.2},
        "width": {"int": [16, 512], "log": True},
        "depth": {"int": [1, 3]},
        "batch_size": {"choice": [256, 32, 64, 128]},
        "optimizer": {"choice": ["sgd", "adam"]},
        "momentum": {"float": [0.5, 0.9], "when": {"optimizer": "sgd"}},
        "beta": {"float": [0.8, 0.9], "when": {"optimizer": "adam"}},
        "epochs_fixed": 7,
    }
    centre = space.center_config({k: ParamSpec.model_validate(v) for k, v in entries.items()})
    assert centre == {"lr": pytest.approx(1e-3), "dropout": pytest.approx(0.2), "width": 91,
                      "depth": 2, "batch_size": 128, "optimizer": "sgd",
                      "momentum": pytest.approx(0.7)}


def test_default_config_moves_the_trainers_defaults_into_the_space() -> None:
    entries = {
        "lr": {"float": [1e-5, 1e-1], "log": True},
        "dropout": {"float": [0.1, 0.5], "step": 0.2},       # default 0 -> lowest rate
        "weight_decay": {"float": [1e-6, 1e-2], "log": True},  # default 0 -> lowest
        "width": {"int": [16, 100], "log": True},            # default 128 -> highest
        "batch_size": {"choice": [32, 100, 256]},            # default 128 -> nearest value
        "optimizer": {"choice": ["sgd", "rmsprop"]},         # adam not offered -> first
        "momentum": {"float": [0.5, 0.99], "when": {"optimizer": "sgd"}},
        "gamma2": {"float": [0.2, 0.4]},                     # no default -> the centre
        "epochs_fixed": 7,
    }
    params = {k: ParamSpec.model_validate(v) for k, v in entries.items()}
    defaults = {"lr": 1e-3, "dropout": 0.0, "weight_decay": 0.0, "width": 128,
                "batch_size": 128, "optimizer": "adam", "momentum": 0.9}
    assert space.default_config(params, defaults) == {
        "lr": pytest.approx(1e-3), "dropout": pytest.approx(0.1),
        "weight_decay": pytest.approx(1e-6), "width": 100, "batch_size": 100,
        "optimizer": "sgd", "momentum": pytest.approx(0.9), "gamma2": pytest.approx(0.3)}
    adam = dict(params, optimizer=ParamSpec.model_validate({"choice": ["rmsprop", "adam"]}))
    assert space.default_config(adam, defaults)["optimizer"] == "adam"
    assert "momentum" not in space.default_config(adam, defaults)  # inactive under adam
