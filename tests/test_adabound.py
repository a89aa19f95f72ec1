"""AdaBound / AMSBound against the update rule written out from the paper, and in a study."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import TINY_STUDY, stored
from tunecli.trainer.adabound import AdaBound


def reference_run(grads: np.ndarray, theta: np.ndarray, lr: float, betas: tuple[float, float],
                  final_lr: float, gamma: float, eps: float, decay: float,
                  amsbound: bool) -> tuple[np.ndarray, list[tuple[bool, bool]]]:
    """Luo et al. (ICLR 2019), as the authors' code runs it: Adam's moments and bias
    corrections, the step size clipped into [eta_l(t), eta_u(t)] around final_lr. Returns the
    weights and, per step, whether any step size sat on the lower / upper bound."""
    beta1, beta2 = betas
    m, v, v_max = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    bound_hits = []
    for t, g in enumerate(grads, start=1):
        g = g(theta) if callable(g) else g
        g = g + decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = np.maximum(v_max, v)
        alpha = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        raw = alpha / (np.sqrt(v_max if amsbound else v) + eps)
        lower = final_lr * (1 - 1 / (gamma * t + 1))
        upper = final_lr * (1 + 1 / (gamma * t))
        eta = np.clip(raw, lower, upper)
        bound_hits.append((bool((raw < lower).any()), bool((raw > upper).any())))
        theta = theta - eta * m
    return theta, bound_hits


@pytest.mark.parametrize("amsbound", [False, True])
def test_update_equals_the_published_rule_step_by_step(amsbound: bool) -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(size=(5, 3))
    scale = rng.uniform(0.01, 100.0, size=(5, 3))  # gradients of very different sizes

    def gradient(theta: np.ndarray) -> np.ndarray:
        return scale * (theta - target)  # a badly conditioned quadratic

    settings = {"lr": 0.05, "betas": (0.9, 0.999), "final_lr": 0.01, "gamma": 0.05,
                "eps": 1e-8, "decay": 1e-3}
    theta0 = rng.normal(size=(5, 3))
    expected, hits = reference_run([gradient] * 60, theta0.copy(), amsbound=amsbound,
                                   **settings)  # type: ignore[arg-type]
    assert any(low for low, _ in hits) and any(up for _, up in hits)  # both bounds were active

    weight = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    optimizer = AdaBound([weight], lr=settings["lr"], betas=settings["betas"],
                         final_lr=settings["final_lr"], gamma=settings["gamma"],
                         eps=settings["eps"], weight_decay=settings["decay"], amsbound=amsbound)
    for _ in range(60):
        optimizer.zero_grad()
        weight.grad = torch.tensor(gradient(weight.detach().numpy()))
        optimizer.step()
    np.testing.assert_allclose(weight.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_amsbound_keeps_the_largest_second_moment() -> None:
    weight = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = AdaBound([weight], amsbound=True)
    for g in (10.0, 0.1, 0.1):
        weight.grad = torch.tensor([g], dtype=torch.float64)
        optimizer.step()
    state = optimizer.state[weight]
    assert state["max_exp_avg_sq"].item() > state["exp_avg_sq"].item()


def test_late_in_training_it_steps_like_sgd_at_final_lr() -> None:
    """The bounds close on final_lr: after many steps every step size is final_lr."""
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = AdaBound([weight], lr=1.0, final_lr=0.02, gamma=1.0)
    for _ in range(10_000):
        weight.grad = torch.tensor([3.0, 1e-4], dtype=torch.float64)
        optimizer.step()
    before = weight.detach().clone()
    weight.grad = torch.tensor([3.0, 1e-4], dtype=torch.float64)
    optimizer.step()
    exp_avg = optimizer.state[weight]["exp_avg"]
    np.testing.assert_allclose((before - weight.detach()) / exp_avg, [0.02, 0.02], rtol=2e-4)


def test_a_schedule_lowers_final_lr_in_proportion() -> None:
    weight = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    optimizer = AdaBound([weight], lr=1.0, final_lr=0.1, gamma=1.0)
    optimizer.param_groups[0]["lr"] = 0.5  # as a schedule would
    for _ in range(10_000):
        weight.grad = torch.ones(1, dtype=torch.float64)
        optimizer.step()
    before = weight.item()
    weight.grad = torch.ones(1, dtype=torch.float64)
    optimizer.step()
    assert (before - weight.item()) / optimizer.state[weight]["exp_avg"].item() == \
        pytest.approx(0.05, rel=1e-3)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        AdaBound([torch.nn.Parameter(torch.ones(1))], final_lr=0.0)


def test_a_study_searches_adabound_among_other_optimizers(cli, tmp_path) -> None:
    text = (TINY_STUDY.replace("optimizer: {choice: [adam, sgd]}",
                     "optimizer: {choice: [adam, adabound, sgd]}\n"
                     "  final_lr: {float: [0.01, 0.5], log: true, when: {optimizer: adabound}}\n"
                     "  bound_gamma: {float: [1.0e-4, 1.0e-2], log: true, "
                     "when: {optimizer: adabound}}\n"
                     "  amsgrad: {choice: [false, true], when: {optimizer: [adam, adabound]}}")
            .replace("type: tpe, seed: 1, n_startup_trials: 3", "type: random, seed: 3")
            .replace("pruner: {type: median, n_startup_trials: 2, min_epochs: 1}",
                     "pruner: {type: none}"))
    (tmp_path / "s.yaml").write_text(text)
    (tmp_path / "known.yaml").write_text(  # AMSBound for sure; the sampler picks the rest
        "- {lr: 0.01, width: 16, optimizer: adabound, final_lr: 0.1, bound_gamma: 0.001, "
        "amsgrad: true}\n")
    result = cli("search", "s.yaml", "--n-trials", "8", "--enqueue", "known.yaml")
    assert result.exit_code == 0, result.output
    trials = stored()
    adabound = [t for t in trials if t.params["optimizer"] == "adabound"]
    assert adabound and all(t.state.name == "COMPLETE" for t in trials)
    assert {"final_lr", "bound_gamma", "amsgrad"} <= set(adabound[0].params)
    assert all(0 < t.value <= 1 for t in adabound)
