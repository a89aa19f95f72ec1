"""Augmentation on the device: each transformation, mixup and label smoothing, and a CNN study
that searches them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import stored
from tunecli.trainer.augment import Augmentation

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(device: str, batch: int = 64, side: int = 12) -> torch.Tensor:
    return torch.rand(batch, 2, side, side, device=device) + 0.5  # no zero pixel


def gen(device: str, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize("device", DEVICES)
def test_crop_is_a_shifted_window_of_the_zero_padded_image(device: str) -> None:
    x = images(device)
    out = Augmentation(crop=2).images(x, gen(device))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(out[i], padded[i, :, dy:dy + 12, dx:dx + 12])]
        assert found, i
        shifts.add(found[0])
    assert out.device.type == device and len(shifts) > 5


@pytest.mark.parametrize("device", DEVICES)
def test_flip_mirrors_about_half_the_images(device: str) -> None:
    x = images(device)
    out = Augmentation(flip=True).images(x, gen(device))
    flipped = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48


@pytest.mark.parametrize("device", DEVICES)
def test_translation_moves_a_dot_by_at_most_the_share_of_the_side(device: str) -> None:
    x = torch.zeros(32, 1, 20, 20, device=device)
    x[:, :, 8:12, 8:12] = 1.0  # a 4x4 square in the middle
    out = Augmentation(translate=0.2).images(x, gen(device))
    rows = torch.arange(20, device=device, dtype=torch.float32)
    for image in out[:, 0]:
        mass = image.sum()
        assert mass == pytest.approx(16.0, rel=1e-3)  # bilinear moves mass, keeps it
        cy = (image.sum(1) * rows).sum() / mass
        cx = (image.sum(0) * rows).sum() / mass
        assert abs(cy - 9.5) <= 4.0 + 1e-3 and abs(cx - 9.5) <= 4.0 + 1e-3
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("device", DEVICES)
def test_rotation_turns_about_the_centre(device: str) -> None:
    x = torch.zeros(16, 1, 21, 21, device=device)
    x[:, :, 10, 2:19] = 1.0  # a horizontal bar through the centre
    out = Augmentation(rotate=90).images(x, gen(device))
    assert torch.allclose(out[:, 0, 10, 10], torch.ones(16, device=device), atol=0.05)
    vertical = out[:, 0, :, 10].sum(1)  # a bar turned by ~90 degrees stands upright
    assert vertical.max() > 5 * vertical.min()
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("device", DEVICES)
def test_cutout_zeroes_one_square(device: str) -> None:
    x = images(device, side=16)
    out = Augmentation(cutout=4).images(x, gen(device))
    zeroed = (out == 0).all(1)  # [batch, h, w]
    counts = zeroed.flatten(1).sum(1)
    assert (counts > 0).all() and (counts <= 16).all() and (counts == 16).any()
    for square in zeroed:
        rows, cols = square.nonzero(as_tuple=True)
        assert rows.max() - rows.min() < 4 and cols.max() - cols.min() < 4
    assert torch.equal(out[~(out == 0)], x[~(out == 0)])


@pytest.mark.parametrize("device", DEVICES)
def test_mixup_and_label_smoothing_loss(device: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3).to(device)
    x, y = torch.randn(10, 6, device=device), torch.randint(0, 3, (10,), device=device)
    ce = torch.nn.functional.cross_entropy
    smooth = Augmentation(label_smoothing=0.1).loss(ce, x, y, model, gen(device))
    assert smooth.item() == pytest.approx(ce(model(x), y, label_smoothing=0.1).item())
    plain = Augmentation().loss(ce, x, y, model, gen(device))
    assert plain.item() == pytest.approx(ce(model(x), y).item())
    mixed = Augmentation(mixup=0.4).loss(ce, x, y, model, gen(device))
    again = Augmentation(mixup=0.4).loss(ce, x, y, model, gen(device))
    assert mixed.item() == again.item() != plain.item()  # seeded by the trial's generator
    # by hand: the same draws from the same generator
    g = gen(device)
    import numpy as np
    seed = int(torch.randint(0, 2**31 - 1, (1,), device=device, generator=g).item())
    weight = float(np.random.default_rng(seed).beta(0.4, 0.4))
    partner = torch.randperm(10, device=device, generator=g)
    out = model(x * weight + x[partner] * (1 - weight))
    expected = weight * ce(out, y) + (1 - weight) * ce(out, y[partner])
    assert mixed.item() == pytest.approx(expected.item())


CNN_STUDY = """\
name: augmented
metric: val_accuracy
budget: {n_trials: 4}
sampler: {type: random, seed: 2}
pruner: {type: none}
trainer:
  dataset: {name: digits, max_train_samples: 300}
  model: cnn
  epochs: 2
space:
  conv_blocks: 1
  channels: 8
  classifier_width: 16
  lr: 0.003
  crop: {int: [0, 2]}
  flip: {choice: [false, true]}
  rotate: {float: [0, 20]}
  translate: {float: [0, 0.2]}
  cutout: {int: [0, 3]}
  mixup: {float: [0, 0.4]}
  label_smoothing: {float: [0, 0.2]}
"""


def test_a_cnn_study_searches_augmentation(cli, tmp_path: Path) -> None:
    (tmp_path / "aug.yaml").write_text(CNN_STUDY)
    result = cli("search", "aug.yaml")
    assert result.exit_code == 0, result.output
    trials = stored(name="augmented")
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    names = {"crop", "flip", "rotate", "translate", "cutout", "mixup", "label_smoothing"}
    assert all(names <= set(t.params) for t in trials)
    assert len({t.params["rotate"] for t in trials}) == 4
    assert all(0 < t.value <= 1 for t in trials)
