"""Images in folders (``dataset: {name: image-folder}``): a folder per class of PNG/JPEG files,
written here as small images, searched, trained, and predicted from image files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import stored

CLASSES = ("ring", "square", "stripes")

STUDY = """\
name: photos
metric: val_accuracy
trainer:
  dataset: {name: image-folder, path: photos%s}
  model: cnn
  epochs: 6
space:
  lr: {float: [3.0e-3, 1.0e-2], log: true}
  batch_size: {value: 16}
sampler: {type: random, seed: 0}
pruner: {type: none}
budget: {n_trials: 2}
"""


def _shape(kind: str, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "ring":
        return ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 3) ** 2) * 220.0
    if kind == "square":
        return ((abs(yy - h / 2) < h / 4) & (abs(xx - w / 2) < w / 4)) * 220.0
    return ((xx // 3) % 2) * 220.0


def write_images(folder: Path, per_class: int = 30, seed: int = 0) -> None:
    """Grey and colour images of two sizes, as PNG and JPEG: what a real folder holds."""
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = (20, 24) if i % 2 else (16, 16)
            grey = np.clip(_shape(kind, h, w) + rng.normal(0, 25, (h, w)), 0, 255)
            pixels = grey.astype(np.uint8)
            image = (np.stack([pixels, pixels // 2, 255 - pixels], -1) if i % 3 == 0
                     else pixels)
            Image.fromarray(image).save(folder / kind / f"{i}.{'jpg' if i % 4 == 0 else 'png'}")


def test_an_image_folder_is_searched_trained_and_predicted_from_image_files(
        cli, tmp_path: Path) -> None:
    write_images(tmp_path / "photos")
    (tmp_path / "photos" / "ring" / "notes.txt").write_text("not an image: left out")
    (tmp_path / "study.yaml").write_text(STUDY % ", size: [16, 16]")

    result = cli("search", "study.yaml")
    assert result.exit_code == 0, result.output
    trials = stored(name="photos")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(len(t.intermediate_values) == 6 for t in trials)

    # "photos" is both the study and its images' folder: train takes the study's name
    result = cli("train", "photos")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "models" / "photos.json").read_text())
    pipeline = info["pipeline"]
    assert pipeline["image_size"] == [16, 16] and pipeline["channels"] == 3
    assert pipeline["classes"] == list(CLASSES) and pipeline["raw_shape"] == [3, 16, 16]

    # New files, of both sizes, read (and resized) as training read its own
    write_images(tmp_path / "new", per_class=6, seed=1)
    result = cli("predict", "models/photos.json", "new", "--evaluate", "--out", "p.csv")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "row,prediction" and len(rows) == 1 + 3 * 6
    assert "ring/0.jpg," in "\n".join(rows) and "square/5.png," in "\n".join(rows)
    accuracy = float(next(line.split()[1] for line in result.output.splitlines()
                          if line.startswith("accuracy")))
    assert accuracy >= 0.8, result.output

    result = cli("predict", "models/photos.json", "new/stripes/1.png", "--proba")
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[-2:]
    assert header == "row,prediction,p_ring,p_square,p_stripes"
    assert row.startswith("1.png,")

    # The loaded model takes raw bytes at the trained size, or resizes a batch of another
    import torch

    from tunecli.api import load_model
    from tunecli.trainer.image_files import image_array

    model = load_model(tmp_path / "models" / "photos.json")
    path = tmp_path / "new" / "stripes" / "3.png"   # 20 x 24
    exact = torch.from_numpy(image_array(path, (16, 16), 3)[None].astype(np.float32))
    other = torch.from_numpy(image_array(path, (20, 24), 3)[None].astype(np.float32))
    with torch.no_grad():
        assert int(model(exact).argmax()) == int(model(other).argmax()) == 2


@pytest.mark.parametrize(("layout", "words"), [
    ("missing", "photos is not a folder. Give a folder with one subfolder of images per class"),
    ("one class", "has 1 class folder and"),
    ("empty class", "holds no image files"),
    ("damaged", "cannot be read as an image"),
    ("sizes", "trainer.dataset.size: the images of"),
])
def test_a_bad_image_folder_is_one_line_before_anything_is_stored(
        cli, tmp_path: Path, layout: str, words: str) -> None:
    photos = tmp_path / "photos"
    if layout != "missing":
        write_images(photos, per_class=4)
    if layout == "one class":
        for kind in CLASSES[1:]:
            for file in (photos / kind).iterdir():
                file.rename(photos / f"{kind}-{file.name}")
            (photos / kind).rmdir()
    if layout == "empty class":
        (photos / "empty").mkdir()
    if layout == "damaged":
        (photos / "ring" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "study.yaml").write_text(STUDY % ("" if layout == "sizes" else ", size: 16"))
    result = cli("search", "study.yaml")
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert not (tmp_path / "tunecli.db").exists() or not stored(name="photos")


def test_size_belongs_to_image_folders_and_the_folder_to_its_path(cli, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(STUDY.replace("image-folder, path: photos%s",
                                                   "digits, size: [8, 8]"))
    (tmp_path / "b.yaml").write_text(STUDY.replace(", path: photos%s", ""))
    result = cli("validate", "a.yaml", "--no-data")
    assert result.exit_code == 2
    assert "a.yaml: trainer.dataset.size: resizes an image-folder's images" in result.output
    result = cli("validate", "b.yaml", "--no-data")
    assert result.exit_code == 2
    assert "b.yaml: trainer.dataset.path: the image-folder data set needs its folder" \
        in result.output
