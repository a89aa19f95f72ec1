"""Bad input is caught before anything runs: each case gives exit 2 and one line naming the
file, the key path and the fix, from `validate` and from `search` alike, and stores nothing."""

from __future__ import annotations

import optuna
import pytest

BASE = """\
name: bad
budget: {n_trials: 2}
sampler: {type: random, seed: 0}
pruner: {type: none}
trainer:
  dataset: {name: synthetic-classification, n_samples: 60, n_features: 4, n_classes: 2}
  model: mlp
  epochs: 1
space:
  lr: {float: [1.0e-3, 1.0e-1], log: true}
"""

CSV_DATASET = "dataset: {name: synthetic-classification, n_samples: 60, n_features: 4, " \
              "n_classes: 2}"
GOOD_ROWS = "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(30))


def csv_study(extra: str = "") -> dict[str, str]:
    return {CSV_DATASET: "dataset: {name: csv, path: d.csv" + extra + "}"}


MODEL_FILE = "trainer:\n  dataset"

# id, replacements in BASE ({old: new}; "+space" appends to the space), files, words expected
CASES = [
    # values of the built-in hyperparameters
    ("lr-text", {"+space": "  batch_size: 32\n", "lr: {float: [1.0e-3, 1.0e-1], log: true}":
                 "lr: banana"}, {}, "space.lr: lr must be a number > 0, not 'banana'"),
    ("lr-null", {"lr: {float: [1.0e-3, 1.0e-1], log: true}": "lr:"}, {}, "space.lr: lr must be"),
    ("activation-choice", {"+space": "  activation: {choice: [relu, swish]}\n"}, {},
     "activation must be one of relu"),
    ("batch-size-zero", {"+space": "  batch_size: 0\n"}, {}, "batch_size must be a whole number"),
    ("batch-size-fraction", {"+space": "  batch_size: 32.5\n"}, {}, "batch_size must be a whole"),
    ("dropout-range", {"+space": "  dropout: {float: [0, 1.5]}\n"}, {},
     "goes outside what dropout accepts"),
    ("momentum-two", {"+space": "  momentum: 2\n"}, {}, "momentum must be a number in [0, 1)"),
    ("width-float-range", {"+space": "  width: {float: [16, 64]}\n"}, {},
     "width takes whole numbers"),
    ("optimizer-typo", {"+space": "  optimizer: {choice: [adam, sgdd]}\n"}, {},
     "Did you mean 'sgd'?"),
    ("schedule-typo", {"+space": "  schedule: cosinee\n"}, {}, "Did you mean 'cosine'?"),
    ("bool-as-yes", {"+space": "  batch_norm: yes\n"}, {}, "batch_norm must be true or false"),
    ("bool-as-range", {"+space": "  nesterov: {float: [0, 1]}\n"}, {}, "not a float range"),
    ("depth-negative", {"+space": "  depth: -1\n"}, {}, "depth must be a whole number >= 0"),
    ("lr-from-zero", {"lr: {float: [1.0e-3, 1.0e-1], log: true}": "lr: {float: [0, 0.1]}"}, {},
     "goes outside what lr accepts"),
    ("beta2-one", {"+space": "  beta2: 1.0\n"}, {}, "beta2 must be a number in [0, 1)"),
    ("gamma-zero", {"+space": "  gamma: 0\n"}, {}, "gamma must be a number in (0, 1]"),
    ("layer-width-zero", {"+space": "  width_0: 0\n"}, {}, "space.width_0"),
    ("weight-decay-negative", {"+space": "  weight_decay: -0.1\n"}, {}, "weight_decay must be"),
    ("l1-range", {"+space": "  l1: {float: [-1, 1]}\n"}, {}, "goes outside what l1 accepts"),
    ("grad-clip-text", {"+space": "  grad_clip: abc\n"}, {}, "grad_clip must be a number"),
    ("unknown-hyperparameter", {"+space": "  lrr: 0.1\n"}, {}, "Did you mean 'lr'?"),
    # conditions
    ("condition-on-float", {"+space": "  momentum: {float: [0.5, 0.9], when: {lr: 0.01}}\n"}, {},
     "is a float range"),
    ("condition-outside-int", {"+space": "  depth: {int: [1, 3]}\n"
                                         "  width: {int: [8, 16], when: {depth: 7}}\n"}, {},
     "7 is not a value 'depth' can take"),
    ("condition-never-true",
     {"+space": "  optimizer: adam\n  momentum: {float: [0.5, 0.9], when: {optimizer: sgd}}\n"},
     {}, "is fixed to 'adam'"),
    ("condition-unknown", {"+space": "  momentum: {float: [0.5, 0.9], when: {opt: sgd}}\n"}, {},
     "not in the space"),
    ("condition-order", {"+space": "  momentum: {float: [0.5, 0.9], when: {optimizer: sgd}}\n"
                                   "  optimizer: {choice: [adam, sgd]}\n"}, {},
     "'optimizer' must come before 'momentum'"),
    ("condition-not-a-choice", {"+space": "  optimizer: {choice: [adam, sgd]}\n"
                                          "  momentum: {float: [0.5, 0.9], when: {optimizer: "
                                          "rmsprop}}\n"}, {}, "is not one of optimizer's choices"),
    # the file's structure and keys
    ("top-level-typo", {"space:": "spaces:"}, {}, "unknown key 'spaces'. Did you mean 'space'?"),
    ("budget-not-mapping", {"budget: {n_trials: 2}": "budget: 10"}, {},
     "budget: must be a mapping of keys"),
    ("range-not-list", {"lr: {float: [1.0e-3, 1.0e-1], log: true}": "lr: {float: 0.01}"}, {},
     "must be a list [low, high]"),
    ("int-log-from-zero", {"+space": "  width: {int: [0, 64], log: true}\n"}, {}, "e.g. to 1,"),
    ("low-above-high", {"[1.0e-3, 1.0e-1]": "[1.0e-1, 1.0e-3]"}, {}, "is greater than high"),
    ("equal-bounds", {"[1.0e-3, 1.0e-1]": "[1.0e-3, 1.0e-3]"}, {}, "write value:"),
    ("sampler-typo", {"type: random": "type: tpx"}, {}, "Did you mean 'tpe'?"),
    ("pruner-typo", {"type: none": "type: ashaa"}, {}, "Did you mean 'asha'?"),
    ("metric-typo", {"name: bad": "name: bad\nmetric: val_acc"}, {}, "unknown metric 'val_acc'"),
    ("direction-word", {"name: bad": "name: bad\ndirection: max"}, {},
     "direction: must be 'maximize' or 'minimize', not 'max'"),
    ("name-spaces", {"name: bad": "name: bad name!"}, {}, "not a usable study name"),
    ("timeout-word", {"budget: {n_trials: 2}": "budget: {n_trials: 2, timeout: soon}"}, {},
     "budget.timeout"),
    ("n-trials-zero", {"budget: {n_trials: 2}": "budget: {n_trials: 0}"}, {},
     "budget.n_trials"),
    ("epochs-zero", {"epochs: 1": "epochs: 0"}, {}, "trainer.epochs"),
    ("budget-epochs-zero", {"budget: {n_trials: 2}": "budget: {epochs: 0}"}, {},
     "budget.epochs"),
    ("fuse-zero", {"epochs: 1": "epochs: 1\n  fuse: 0"}, {},
     "trainer.fuse: 0 is not a fuse size; use auto, 1 (off)"),
    ("fuse-word", {"epochs: 1": "epochs: 1\n  fuse: many"}, {}, "'many' is not a fuse size"),
    ("device-word", {"epochs: 1": "epochs: 1\n  device: gpu"}, {}, "'gpu' is not a device"),
    ("precision-word", {"epochs: 1": "epochs: 1\n  precision: fp8"}, {}, "trainer.precision"),
    ("space-empty", {"space:\n  lr: {float: [1.0e-3, 1.0e-1], log: true}\n": "space: {}\n"}, {},
     "the search space is empty"),
    ("choice-empty", {"+space": "  optimizer: {choice: []}\n"}, {}, "at least one value"),
    ("choice-twice", {"+space": "  optimizer: {choice: [adam, adam]}\n"}, {}, "twice"),
    ("step-and-log", {"log: true}": "log: true, step: 0.01}"}, {}, "cannot be combined"),
    ("key-twice", {"+space": "  lr: 0.1\n"}, {}, "written twice"),
    ("tab-indent", {"  model: mlp": "\tmodel: mlp"}, {}, "tabs"),
    ("python-tag", {"name: bad": "name: !!python/object:os.system bad"}, {}, "not allowed"),
    ("dataset-typo", {CSV_DATASET: "dataset: digitz"}, {}, "Did you mean 'digits'?"),
    ("max-epochs", {"type: none": "type: hyperband, max_epochs: 5"}, {},
     "pruner.max_epochs: is larger than trainer.epochs"),
    ("sampler-option-seed", {"type: random, seed: 0": "type: random, options: {seed: 1}"}, {},
     "has its own key"),
    ("grid-too-big", {"type: random, seed: 0": "type: grid, grid_points: 100",
                      "+space": "  width: {int: [1, 500]}\n  dropout: {float: [0, 0.5]}\n"
                                "  momentum: {float: [0.1, 0.9]}\n"}, {}, "grid has"),
    ("empty-file", {"*": ""}, {}, "the file is empty"),
    ("list-file", {"*": "- a\n- b\n"}, {}, "top level must be a mapping"),
    ("yaml-octal-is-decimal-so-name-ok", {"*": BASE.replace("epochs: 1", "epochs: 1:30")}, {},
     "trainer.epochs"),
    # data and model, which only loading and building reveal
    ("csv-missing", csv_study(), {}, "csv file"),
    ("csv-wrong-target", csv_study(", target: label"), {"d.csv": "a,b,y\n" + GOOD_ROWS},
     "column 'label' is not in"),
    ("metric-of-other-task", {"name: bad": "name: bad\nmetric: val_rmse"}, {},
     "metric 'val_rmse' is not reported for a classification data set"),
    ("model-file-missing", {"model: mlp": "model: nothere.py:build"}, {}, "not found"),
    ("model-signature", {"model: mlp": "model: m.py:build"},
     {"m.py": "def build():\n    return None\n"},
     "cannot be called as build(params, input_shape, n_outputs)"),
    ("model-raises", {"model: mlp": "model: m.py:build"},
     {"m.py": "def build(params, input_shape, n_outputs):\n    raise ValueError('no')\n"},
     "fails with the space's first values (ValueError: no)"),
    ("model-output-shape", {"model: mlp": "model: m.py:build"},
     {"m.py": "from torch import nn\ndef build(params, input_shape, n_outputs):\n"
              "    return nn.Linear(input_shape[0], 7)\n"}, "gives outputs of shape [2, 7]"),
    ("model-not-module", {"model: mlp": "model: m.py:build"},
     {"m.py": "def build(params, input_shape, n_outputs):\n    return 3\n"},
     "not a torch.nn.Module"),
    ("model-no-parameters", {"model: mlp": "model: m.py:build"},
     {"m.py": "import torch\nfrom torch import nn\ndef build(params, input_shape, n_outputs):\n"
              "    model = nn.Linear(input_shape[0], n_outputs)\n"
              "    model.requires_grad_(False)\n    return model\n"},
     "the model has no trainable parameters"),
    ("model-no-function", {"model: mlp": "model: m.py:make"},
     {"m.py": "def build(params, input_shape, n_outputs):\n    return 3\n"}, "no function 'make'"),
    ("mnist-no-root", {CSV_DATASET: "dataset: mnist"}, {}, "--data-root DIR or TUNECLI_DATA"),
    ("user-model-declared-range", {"model: mlp": "model: m.py:build", "+space": "  hidden: 0\n"},
     {"m.py": "from torch import nn\nfrom tunecli.catalogue import Hyperparameter\n"
              "HYPERPARAMETERS = {'hidden': Hyperparameter('hidden', 'int', 8, 'units', low=1)}\n"
              "def build(params, input_shape, n_outputs):\n"
              "    return nn.Linear(input_shape[0], n_outputs)\n"},
     "space.hidden: hidden must be a whole number >= 1, not 0"),
    # CSV files
    ("csv-nan", csv_study(), {"d.csv": "a,b,y\n1,NaN,0\n" + GOOD_ROWS},
     "line 2, column 'b': the cell 'NaN' is missing"),
    ("csv-empty-cell", csv_study(), {"d.csv": "a,b,y\n" + GOOD_ROWS + "1,,1\n"},
     "line 32, column 'b'"),
    ("csv-inf", csv_study(), {"d.csv": "a,b,y\ninf,1,0\n" + GOOD_ROWS}, "column 'a'"),
    ("csv-wrong-delimiter", csv_study(", delimiter: ','"),
     {"d.csv": "a;b;y\n" + GOOD_ROWS.replace(",", ";")}, "single column"),
    ("csv-latin1", csv_study(), {"d.csv": "a,b,y\n" + GOOD_ROWS + "1,2,caf\xe9\n"},
     "trainer.dataset.encoding"),
    ("csv-binary", csv_study(), {"d.csv": b"\x00\x01\x02PK" * 50}, "binary"),
    # augmentation that cannot apply to the data
    ("rotate-on-a-table", {"+space": "  rotate: {float: [0, 15]}\n"}, {},
     "space.rotate: rotate transforms images, and this data set is not images"),
    ("flip-on-a-table", {"+space": "  flip: {choice: [false, true]}\n"}, {},
     "space.flip: flip transforms images"),
    ("mixup-on-regression", {"+space": "  mixup: 0.2\n", "name: bad": "name: bad\n"
                             "metric: val_rmse\ndirection: minimize",
                             "synthetic-classification, n_samples"
                             ": 60, n_features: 4, n_classes: 2": "synthetic-regression, "
                             "n_samples: 60, n_features: 4"}, {},
     "space.mixup: mixup mixes class labels, and this data set is regression"),
    ("translate-too-far", {"+space": "  translate: 0.7\n"}, {}, "space.translate"),
    ("csv-empty-target", csv_study(), {"d.csv": "a,b,y\n1,2,\n" + GOOD_ROWS},
     "line 2: the target 'y' is empty"),
    ("csv-one-class", csv_study(), {"d.csv": "a,b,y\n" + "".join(f"{i},{i},1\n"
                                                                  for i in range(20))},
     "has one class only"),
    ("csv-ragged", csv_study(), {"d.csv": "a,b,y\n1,2,0,9\n" + GOOD_ROWS}, "line 2 has 4 cells"),
    ("csv-text-column", csv_study(), {"d.csv": "a,b,y\nred,2,0\n" + GOOD_ROWS},
     "column 'a': 'red' is not a number"),
    ("csv-folder", csv_study(), {"d.csv/x": "1"}, "is a folder"),
    ("csv-unknown-encoding", csv_study(", encoding: klingon"), {"d.csv": "a,b,y\n" + GOOD_ROWS},
     "unknown encoding"),
    ("csv-unknown-categorical", csv_study(", categorical: [colour]"),
     {"d.csv": "a,b,y\n" + GOOD_ROWS}, "categorical column 'colour'"),
    ("csv-missing-option", csv_study(", missing: skip"), {"d.csv": "a,b,y\n" + GOOD_ROWS},
     "trainer.dataset.missing"),
]


def _write(tmp_path, edits: dict[str, str], files: dict[str, object]) -> None:
    text = edits.get("*", BASE)
    for old, new in edits.items():
        if old == "+space":
            text += new
        elif old != "*":
            assert old in text, old
            text = text.replace(old, new)
    (tmp_path / "study.yaml").write_bytes(text.encode("utf-8"))
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("latin-1"))


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("command", ["validate", "search"])
@pytest.mark.parametrize(("case", "edits", "files", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_stores_nothing(cli, tmp_path, command, case, edits,
                                                           files, words) -> None:
    _write(tmp_path, edits, files)
    result = cli(command, "study.yaml")
    out = result.output
    assert result.exit_code == 2, out
    assert words in out, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: study.yaml"), out
    db = tmp_path / "tunecli.db"
    assert not db.exists() or not optuna.get_all_study_names(f"sqlite:///{db}")
