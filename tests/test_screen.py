"""The live view as a terminal shows it: a search run in a pseudo-terminal of 60, 80 and 120
columns, its output played into pyte's terminal emulator, and the screen read as a user would.
No number is cut (rich's "…" never appears), no key=value is broken across lines, and a
study-wide notice is said once, with one process and with 3 workers."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from tests.conftest import TINY_STUDY, stored, tunecli_command
from tunecli.reports.live import format_params

pyte = pytest.importorskip("pyte")
ROWS = 400  # tall enough that nothing scrolls away


def record(command: list[str], columns: int, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run ``command`` on a terminal ``columns`` wide: its exit code and every screen it
    showed (the last is what stays)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, columns, 0, 0))
    env = {**env, "COLUMNS": str(columns), "LINES": str(ROWS), "TERM": "xterm-256color"}
    proc = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env,
                            close_fds=True)
    os.close(follower)
    screen = pyte.Screen(columns, ROWS)
    stream = pyte.ByteStream(screen)
    screens: list[str] = []
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the command closed the terminal
                break
            if not data:
                break
            stream.feed(data)
            screens.append("\n".join(line.rstrip() for line in screen.display))
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=60), screens


STUDY = (TINY_STUDY.replace("n_samples: 300", "n_samples: 600").replace("epochs: 3", "epochs: 6")
         .replace("n_trials: 6", "n_trials: 10, timeout: 30m"))


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("columns", [60, 80, 120])
def test_the_screen_at_each_width(write_study, subprocess_env, tmp_path: Path, columns: int,
                                  workers: int) -> None:
    env = {k: v for k, v in subprocess_env.items() if k != "CI"}
    code, screens = record([*tunecli_command(), "search", str(write_study(STUDY)),
                            "--workers", str(workers)], columns, env)
    final = screens[-1]
    assert code == 0, final
    for screen in screens:  # every frame of the live view: whole fields only
        assert "…" not in screen, screen
    lines = final.splitlines()
    status = [line for line in lines if "✓" in line and "/10" in line]
    assert status and "10/10" in status[-1], final
    for trial in stored():
        if trial.state.name not in ("COMPLETE", "PRUNED"):
            continue
        for word in format_params(trial.params, limit=None).split():
            assert any(word in line.split() for line in lines), (word, final)
    notices = [line for line in lines if line.startswith(("fused trials:", "trials train"))]
    assert len(notices) == len(set(notices)) <= 1, final
