"""The storage's own cost as workers grow: PostgreSQL straight, against ``tunecli serve``.

Light client processes stand in for workers: each asks for a trial (TPE), reports three
intermediate values (asking the median pruner each time), and tells the result, as tunecli's
engine does around a real trial, for ``--seconds`` seconds. For 8, 32 and 128 clients, each
way, it prints trials per second, the median and p95 time of one ``ask``, and the most client
connections the database held (sampled every 0.5 s from ``pg_stat_activity``). ``--lock`` adds
a third way: the proxy locked with TLS and a token (a certificate made with openssl), and its
ratio to the open proxy (the lock's cost per request).

    python benchmarks/storage_scale.py                    # 8 32 128 clients, 20 s each
    python benchmarks/storage_scale.py --clients 8 32 --seconds 10
    python benchmarks/storage_scale.py --lock               # ... and the locked proxy

Needs Debian's PostgreSQL (``.ci/run`` installs it); it starts a private server in /tmp.
"""

from __future__ import annotations

import argparse
import glob
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class Server:
    """A private PostgreSQL server (as the tests start one)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = Path(found[-1]).parent
        self.data = Path(tempfile.mkdtemp(prefix="tunecli-bench-pg-"))
        self.data.chmod(0o755)
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.data, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        run = [*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data / "db"), "-A",
               "trust", "-U", "postgres"]
        subprocess.run(run, check=True, capture_output=True)
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data / "db"),
                        "-w", "-l", str(self.data / "log"), "-o",
                        f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
                        "-c max_connections=400", "start"], check=True, capture_output=True)
        subprocess.run([*self.as_user, str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p",
                        str(self.port), "-U", "postgres", "bench"], check=True,
                       capture_output=True)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/bench"

    def connections(self) -> int:
        found = subprocess.run([*self.as_user, str(self.bindir / "psql"), "-h", "127.0.0.1",
                                "-p", str(self.port), "-U", "postgres", "-At", "-c",
                                "select count(*) from pg_stat_activity where backend_type = "
                                "'client backend'", "bench"], capture_output=True, text=True)
        return int(found.stdout.strip() or 1) - 1

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data / "db"),
                        "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(self.data, ignore_errors=True)


def client(url: str, study_name: str, start_at: float, seconds: float,
           results: multiprocessing.Queue) -> None:
    """One stand-in worker: ask, report three epochs (pruner asked each time), tell."""
    from tunecli.engine.store.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, heartbeat=False)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.TPESampler(n_startup_trials=10),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=5))
    asks, trials = [], 0
    while time.time() < start_at:
        time.sleep(0.01)
    while time.time() < start_at + seconds:
        began = time.perf_counter()
        trial = study.ask()
        asks.append(time.perf_counter() - began)
        x, y = trial.suggest_float("x", -3, 3), trial.suggest_float("y", -3, 3, log=False)
        trial.suggest_categorical("kind", ["a", "b", "c"])
        value, state = 0.0, optuna.trial.TrialState.COMPLETE
        for epoch in range(1, 4):
            value = (x - 1) ** 2 + y ** 2 + 1.0 / epoch
            trial.report(value, epoch)
            if trial.should_prune():
                state = optuna.trial.TrialState.PRUNED
                break
        study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None,
                   state=state)
        trials += 1
    results.put((trials, asks))


def measure(server: Server, url: str, clients: int, seconds: float, label: str
            ) -> dict[str, float]:
    name = f"{label}-{clients}"
    creator = optuna.storages.RDBStorage(server.url)
    optuna.create_study(study_name=name, storage=creator)
    creator.engine.dispose()  # only the clients' (and the proxy's) connections are counted
    results: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.time() + 2.0 + clients * 0.05   # every client connected first
    procs = [multiprocessing.Process(target=client, args=(url, name, start_at, seconds, results))
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    held, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            held[0] = max(held[0], server.connections())
            time.sleep(0.5)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    found = [results.get(timeout=seconds + 600) for _ in procs]
    stop.set()
    for proc in procs:
        proc.join()
    asks = sorted(a for _, times in found for a in times)
    total = sum(n for n, _ in found)
    return {"trials_per_s": total / seconds, "ask_p50_ms": 1000 * statistics.median(asks),
            "ask_p95_ms": 1000 * asks[int(0.95 * (len(asks) - 1))], "connections": held[0],
            "trials": total}


def serve(server: Server, lock: Path | None = None) -> tuple[subprocess.Popen, str]:
    """``tunecli serve`` over the server; with ``lock`` (a folder), TLS and a token made there,
    and the clients' environment set to use them (they are forked after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options: list[str] = []
    if lock is not None:
        cert, key, token = lock / "cert.pem", lock / "key.pem", lock / "token"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                       capture_output=True)
        token.write_text("benchmark-token\n")
        options = ["--tls-cert", str(cert), "--tls-key", str(key), "--token-file", str(token)]
        os.environ.update({"TUNECLI_TLS_CA": str(cert), "TUNECLI_TOKEN_FILE": str(token)})
    else:
        for name in ("TUNECLI_TLS_CA", "TUNECLI_TOKEN_FILE"):
            os.environ.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-c", "from tunecli.cli import main; main()",
                             "serve", "--storage", server.url, "--port", str(port), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert "serving" in line, line
    return proc, f"grpc://127.0.0.1:{port}"


def through_proxy(server: Server, clients: int, seconds: float, label: str,
                  lock: Path | None = None) -> dict[str, float]:
    proc, proxy_url = serve(server, lock)
    try:
        return measure(server, proxy_url, clients, seconds, label)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--lock", action="store_true",
                        help="also the proxy with TLS and a token")
    args = parser.parse_args()
    multiprocessing.set_start_method("fork")
    server = Server()
    rows = []
    try:
        for clients in args.clients:
            direct = measure(server, server.url, clients, args.seconds, "direct")
            proxied = through_proxy(server, clients, args.seconds, "proxy")
            locked = through_proxy(server, clients, args.seconds, "locked",
                                   Path(tempfile.mkdtemp())) if args.lock else None
            rows.append((clients, direct, proxied, locked))
            print(f"{clients} clients done", file=sys.stderr, flush=True)
    finally:
        server.stop()
    print(f"storage cost alone, {os.cpu_count()} CPU cores, {args.seconds:g} s per run "
          f"(TPE + median pruner, 3 reports a trial)")
    print(f"{'clients':>7}  {'way':<9} {'trials/s':>9} {'ask p50':>9} {'ask p95':>9} "
          f"{'db conns':>8}  {'trials/s ratio':>21}")
    for clients, direct, proxied, locked in rows:
        ways = [("postgres", direct, None), ("proxy", proxied, direct)]
        if locked is not None:
            ways.append(("locked", locked, proxied))
        for way, row, base in ways:
            ratio = (f"{row['trials_per_s'] / base['trials_per_s']:.2f}x of "
                     f"{'postgres' if base is direct else 'proxy'}" if base is not None else "")
            print(f"{clients:>7}  {way:<9} {row['trials_per_s']:>9.1f} "
                  f"{row['ask_p50_ms']:>7.1f}ms {row['ask_p95_ms']:>7.1f}ms "
                  f"{row['connections']:>8}  {ratio:>21}")


if __name__ == "__main__":
    main()
