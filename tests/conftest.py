"""Shared fixtures: every test runs in its own folder, so the default storage is private."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from tunecli.cli import app

# A cheap objective: a tiny MLP on a small synthetic set, a few epochs (a trial takes ~0.05 s).
TINY_STUDY = """\
name: tiny
metric: val_accuracy
direction: maximize
budget: {n_trials: 6}
sampler: {type: tpe, seed: 1, n_startup_trials: 3}
pruner: {type: median, n_startup_trials: 2, min_epochs: 1}
trainer:
  dataset: {name: synthetic-classification, n_samples: 300, n_features: 8, n_classes: 3}
  model: mlp
  epochs: 3
space:
  lr: {float: [1.0e-3, 1.0e-1], log: true}
  width: {int: [8, 32]}
  optimizer: {choice: [adam, sgd]}
  momentum: {float: [0.5, 0.9], when: {optimizer: sgd}}
"""


class Collect:
    """A trainer reporter that records each epoch and can stop the trial, as a prune does."""

    def __init__(self, prune_at: int | None = None) -> None:
        self.metrics: list[dict[str, float]] = []
        self.prune_at = prune_at

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        self.metrics.append(metrics)
        if epoch == self.prune_at:
            raise RuntimeError(f"pruned after epoch {epoch}")


def with_sampler(text: str, name: str) -> str:
    """TINY_STUDY (or a variant) searched by sampler ``name`` with seed 0."""
    startup = ", n_startup_trials: 2" if name in ("tpe", "gp", "hyperopt-tpe", "cmaes") else ""
    return re.sub(r"type: tpe, seed: 1, n_startup_trials: \d+",
                  f"type: {name}, seed: 0{startup}", text)


def grid_study(widest: int) -> str:
    """TINY_STUDY searched by the grid sampler over lr (2 values) x width 8..widest."""
    text = TINY_STUDY.replace("type: tpe, seed: 1, n_startup_trials: 3", "type: grid")
    return (text.split("space:")[0]
            + f"space:\n  lr: {{choice: [0.01, 0.03]}}\n  width: {{int: [8, {widest}]}}\n")


# Tests that start real processes (workers, kills, signals, PostgreSQL, the browser) are the
# `slow` subset; `pytest -m "not slow"` is the everyday run. One rule, by what the test uses.
_SLOW_FIXTURES = {"subprocess_env", "postgres_url", "postgres"}


_busy: list[subprocess.Popen] = []


def pytest_configure(config: pytest.Config) -> None:
    """TUNECLI_TEST_BUSY=N: N CPU-bound processes beside the whole suite (started once, by the
    process that runs or distributes the tests), as on a machine that is not idle."""
    count = os.environ.get("TUNECLI_TEST_BUSY", "")
    if count.isdigit() and not hasattr(config, "workerinput"):
        _busy.extend(subprocess.Popen([sys.executable, "-c", "while True: pass"])
                     for _ in range(int(count)))


def pytest_unconfigure(config: pytest.Config) -> None:
    for proc in _busy:
        proc.kill()
        proc.wait()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _private_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))  # decoded data sets land here
    monkeypatch.delenv("TUNECLI_STORAGE", raising=False)
    monkeypatch.delenv("TUNECLI_DATA", raising=False)
    return tmp_path


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a study file (default: TINY_STUDY) and return its path."""
    def write(text: str = TINY_STUDY, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    return write


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: Any) -> Any:
        return self.runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def cli() -> Cli:
    return Cli()


def stored(url: str = "sqlite:///tunecli.db", name: str = "tiny") -> list:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def stored_spec(name: str = "tiny", url: str = "sqlite:///tunecli.db") -> dict:
    """The spec tunecli keeps with a stored study."""
    from tunecli.engine.search.studies import stored_spec as read

    spec = read(optuna.load_study(study_name=name, storage=url))
    assert spec is not None
    return spec


def finished(trials: list) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)


GATED_MODEL = Path(__file__).parent / "gated_model.py"


def gated(text: str) -> str:
    """A study trained by tests/gated_model.py (see its docstring for the gates)."""
    assert "model: mlp" in text
    return text.replace("model: mlp", f"model: {GATED_MODEL}:build")


def gate_env(env: dict[str, str], gate: Path, **settings: int | str) -> dict[str, str]:
    """``env`` with the gate folder and TUNECLI_TEST_<NAME> settings for gated_model."""
    gate.mkdir(exist_ok=True)
    return {**env, "TUNECLI_TEST_GATE": str(gate),
            **{f"TUNECLI_TEST_{k.upper()}": str(v) for k, v in settings.items()}}


def wait_for_file(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    """Wait until ``path`` exists (an observable state, not a guess about speed)."""
    deadline = time.time() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited early with {proc.returncode} before {path} appeared")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.05)


def wait_for(path: Path, words: str, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if path.exists() and path.read_text().count(words) >= 1:
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {path.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {words!r}: {path.read_text()}")


def tunecli_command() -> list[str]:
    """The installed console script, for tests that need a real process."""
    return [sys.executable, "-c", "from tunecli.cli import main; main()"]


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    return env


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking"]


def browser() -> str | None:
    """Debian's chromium (installed by .ci/run), or another Chromium on PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


_no_browser = pytest.mark.skipif(browser() is None and not os.environ.get("CI"),
                                 reason="no chromium (.ci/run installs Debian's)")


def needs_browser(test: Callable[..., Any]) -> Callable[..., Any]:
    """A test that renders in headless Chromium: in the slow subset, and skipped where no
    Chromium is installed, but never in CI (CI=true), where .ci/run installs it: there a
    missing browser fails the test instead of passing silently."""
    return pytest.mark.slow(_no_browser(test))


def browser_command(profile: Path) -> list[str]:
    return [browser() or "chromium", *BROWSER_FLAGS, f"--user-data-dir={profile}",
            "--virtual-time-budget=30000", "--enable-logging=stderr", "--v=0"]


def render_in_browser(page: Path | str, profile: Path) -> tuple[str, str, str]:
    """Open an HTML report (a file, or a server's URL) in headless chromium after its scripts
    ran: (the <body> tag with the page's own render record, the whole DOM, the browser's log
    with console lines). A URL is opened directly: a file that redirects to a server left
    --dump-dom with nothing to print in one run of the suite (the navigation still going)."""
    address = page.as_uri() if isinstance(page, Path) else page
    dom = subprocess.run([*browser_command(profile), "--dump-dom", address],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, f"no <body> in the DOM {dom.stdout[:1000]!r}; log: {dom.stderr[-1500:]}"
    return body.group(0), dom.stdout, dom.stderr


# -- a private PostgreSQL server (Debian's, installed by .ci/run) ---------------------------------

def _postgres_bin() -> Path | None:
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A server in its own folder under /tmp (pytest's are private to root, and the server
    runs as the postgres user), on a free port; ``restart`` as an operator would."""

    def __init__(self, bindir: Path) -> None:
        import socket
        import tempfile

        self.bindir = bindir
        self.data = Path(tempfile.mkdtemp(prefix="tunecli-pg-"))
        self.data.chmod(0o755)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.data, "postgres")
        self.url = f"postgresql://postgres:not-a-secret@127.0.0.1:{self.port}/tunecli"

    def _ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D",
                               str(self.data / "db"), *args], capture_output=True)

    def start(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data / "db"),
                        "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
        self._ctl("-w", "-l", str(self.data / "log"), "-o",
                  f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
                  "-c max_connections=200", "start").check_returncode()
        subprocess.run([*self.as_user, str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p",
                        str(self.port), "-U", "postgres", "tunecli"], check=True,
                       capture_output=True)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server comes back."""
        self._ctl("-w", "-m", "fast", "-l", str(self.data / "log"), "restart").check_returncode()

    def connections(self) -> int:
        """Client connections the server holds now."""
        found = subprocess.run([*self.as_user, str(self.bindir.parent / "bin" / "psql"), "-h",
                                "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-At",
                                "-c", "select count(*) from pg_stat_activity where "
                                "backend_type = 'client backend'", "tunecli"],
                               capture_output=True, text=True, check=True)
        return int(found.stdout.strip()) - 1  # not psql's own

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def postgres() -> Any:
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("needs runuser to start PostgreSQL as a normal user")
    server = Postgres(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres: Postgres) -> str:
    return postgres.url
