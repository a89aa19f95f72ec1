"""A test-only user model whose training waits on files, so tests never bet on timing.

Environment (all optional; without them it is a plain small MLP):

- ``TUNECLI_TEST_GATE``: a folder for the gate files.
- ``TUNECLI_TEST_HOLD_INDEX`` / ``TUNECLI_TEST_HOLD_AT``: the model that is the INDEX-th
  (from 0; several: ``0,1``) to start training in this gate folder stops at its AT-th training
  batch, writes ``held-INDEX`` (its pid), and waits there until ``release-INDEX`` exists. Tests
  kill or signal the process while it is held: a trial that is certainly mid-training, with
  earlier epochs checkpointed.
- ``TUNECLI_TEST_MEET``: each model waits at its first batch until that many worker processes
  have started training, so a test of several workers knows that several really trained.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from torch import nn

_WAIT_SECONDS = 300


def _wait(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + _WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gated_model: gave up waiting for {what}")
        time.sleep(0.02)


def _register(gate: Path) -> int:
    """This model's place in the order models started training (atomic across processes)."""
    index = 0
    while True:
        try:
            os.close(os.open(gate / f"started-{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return index
        except FileExistsError:
            index += 1


class GatedMLP(nn.Module):
    def __init__(self, n_inputs: int, width: int, n_outputs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_inputs, width), nn.ReLU(),
                                 nn.Linear(width, n_outputs))
        self.batches = 0
        self.index = -1

    def forward(self, x):  # type: ignore[no-untyped-def]
        gate = os.environ.get("TUNECLI_TEST_GATE")
        if gate and self.training:
            self._gate(Path(gate))
        return self.net(x.flatten(1))

    def _gate(self, gate: Path) -> None:
        self.batches += 1
        if self.batches == 1:
            self.index = _register(gate)
            meet = int(os.environ.get("TUNECLI_TEST_MEET", "0"))
            if meet:
                (gate / f"worker-{os.getpid()}").touch()
                _wait(lambda: len(list(gate.glob("worker-*"))) >= meet, f"{meet} workers")
        holds = os.environ.get("TUNECLI_TEST_HOLD_INDEX", "")
        if str(self.index) in holds.split(",") \
                and self.batches == int(os.environ.get("TUNECLI_TEST_HOLD_AT", "1")):
            (gate / f"held-{self.index}").write_text(str(os.getpid()))
            _wait(lambda: (gate / f"release-{self.index}").exists(), "release")


def build(params: dict, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    return GatedMLP(math.prod(input_shape), int(params.get("width", 16)), n_outputs)
