"""The default study end to end, as README's first command runs it, then what comes after:
its terminal report, its HTML report in a real headless browser, and `tunecli train`.

The search runs once for the module (about 30-40 s on 2 cores). The browser test needs Debian's
chromium (installed by .ci/run) and is skipped, with the reason, where there is none.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import browser_command, needs_browser, render_in_browser
from tunecli.cli import app

pytestmark = pytest.mark.slow  # runs the default study, a minute or two

REPO = Path(__file__).resolve().parents[1]
# Where the browser's screenshot is kept for people to look at (CI artifact / test output).
OUTPUT = Path(os.environ.get("TUNECLI_TEST_OUTPUT", REPO / "test-output"))
FIGURES = ("history", "curves", "importances", "parallel", "slices", "timeline")


def _readme_block(containing: str) -> str:
    """The README's python code block that contains ``containing``."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return next(block for block in blocks if containing in block)


def _run(*args: object, columns: int = 200) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False,
                                env={"COLUMNS": str(columns)})
    return result


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("default-study")
    storage = f"sqlite:///{folder / 'tunecli.db'}"
    result = _run("search", REPO / "studies" / "digits.yaml", "--storage", storage)
    assert result.exit_code == 0, result.output
    return {"folder": folder, "storage": storage, "output": result.output}


def test_default_study_finishes_with_a_good_model(searched) -> None:
    assert "Stopped: the budget is met." in searched["output"]
    data = json.loads(_run("report", "digits", "--storage", searched["storage"],
                           "--format", "json").output)
    assert data["counts"]["complete"] + data["counts"]["pruned"] == 40
    assert data["best"]["value"] > 0.95
    assert data["epochs"]["saved_by_pruning"] > 0


def test_terminal_report_fits_100_columns(searched) -> None:
    result = _run("report", "digits", "--storage", searched["storage"], columns=100)
    assert result.exit_code == 0
    assert max(len(line.rstrip()) for line in result.output.splitlines()) <= 100
    for words in ("Best trial #", "Parameter importances", "Top ", "saved"):
        assert words in result.output


@needs_browser
def test_html_report_renders_every_figure_in_headless_chromium(searched) -> None:
    page = searched["folder"] / "report.html"
    result = _run("report", "digits", "--storage", searched["storage"], "--html", page)
    assert result.exit_code == 0, result.output
    profile = searched["folder"] / "profile"
    body, dom, log = render_in_browser(page, profile)
    assert 'data-done="yes"' in body, body
    assert 'data-errors=""' in body, body
    assert f'data-figures-rendered="{len(FIGURES)}"' in body, body
    for key in FIGURES:
        tag = re.search(rf'<div[^>]*id="fig-{key}"[^>]*>', dom)
        assert tag and 'data-rendered="yes"' in tag.group(0), key
    # The page logged nothing to the console (no warnings, no errors).
    assert "CONSOLE" not in log, [line for line in log.splitlines() if "CONSOLE" in line]
    assert "Best configuration" in dom and "name: digits-best" in dom

    OUTPUT.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT / "default-study-report.png"
    shot.unlink(missing_ok=True)
    taken = subprocess.run([*browser_command(profile), "--hide-scrollbars",
                            "--window-size=1280,4500",
                            f"--screenshot={shot}", page.as_uri()], capture_output=True,
                           text=True, timeout=180)
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    from PIL import Image  # pillow comes with torchvision

    with Image.open(shot) as image:
        assert image.size == (1280, 4500)
        rgb = bytearray(image.convert("RGB").tobytes())
    pixels = torch.frombuffer(rgb, dtype=torch.uint8).reshape(-1, 3).float()
    # Drawn figures: some pixels are coloured (neither white, grey nor black text).
    coloured = (pixels.std(dim=1) > 30).float().mean().item()
    assert coloured > 0.005, coloured


def test_train_best_config_gives_a_test_accuracy_and_loadable_weights(searched) -> None:
    folder = searched["folder"]
    best_yaml = folder / "best.yaml"
    assert _run("report", "digits", "--storage", searched["storage"],
                "--export", best_yaml).exit_code == 0
    result = _run("train", best_yaml, "--out", folder / "models" / "digits")
    assert result.exit_code == 0, result.output
    assert "Test metrics" in result.output and "test_accuracy" in result.output
    info = json.loads((folder / "models" / "digits.json").read_text())
    assert info["test_metrics"]["test_accuracy"] > 0.9
    assert f"{info['test_metrics']['test_accuracy']:.4f}" in result.output
    assert info["trained_on"] == "training + validation parts"
    assert info["epochs"] == json.loads(_run("report", "digits", "--storage",
                                             searched["storage"], "--format",
                                             "json").output)["best"]["best_epoch"]

    from tunecli.trainer import models
    from tunecli.trainer.final import load_network

    state = torch.load(folder / "models" / "digits.pt", weights_only=True)
    model = models.build(info["model"], info["config"], tuple(info["input_shape"]),
                         info["n_outputs"], None)
    model.load_state_dict(state)  # strict: every weight fits the rebuilt model
    loaded, _ = load_network(folder / "models" / "digits.json")
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, state[key])
    # README's loading example, run as written on this model: the test accuracy train printed.
    snippet = _readme_block("api.load_model(").replace("models/digits-best.json",
                                                       str(folder / "models" / "digits.json"))
    ran = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                         timeout=120, cwd=folder)
    assert ran.returncode == 0, ran.stderr
    shown = float(re.search(r"test accuracy (\d\.\d+)", ran.stdout).group(1))
    assert round(shown, 6) == info["test_metrics"]["test_accuracy"]

    # The shipped example that uses such a model runs on it.
    script = REPO / "examples" / "predict_with_trained_model.py"
    example = subprocess.run([sys.executable, str(script), str(folder / "models" / "digits.json")],
                             capture_output=True, text=True, timeout=120)
    assert example.returncode == 0, example.stderr
    shown = float(re.search(r"accuracy on all 1797 digits (\d\.\d+)", example.stdout).group(1))
    assert shown > 0.9
    assert f"test accuracy {info['test_metrics']['test_accuracy']:.4f}" in example.stdout
