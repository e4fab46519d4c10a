"""Helpers for tests that run real processes: polling with a deadline, subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
from asgiref import sync
from django.db import connection

from agents.models import FINAL_STATUSES, Message, Turn
from beamclaw.celery import app
from tests.factories import AgentFactory, ProviderCredentialFactory

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(interval)


def active_queues(hostname: str) -> set[str]:
    """The queues a running worker consumes, as it answers `inspect active_queues`."""
    reply = app.control.inspect([hostname], timeout=2).active_queues() or {}
    return {queue["name"] for queue in reply.get(hostname, [])}


def worker_is_idle(hostname: str) -> bool:
    """Whether a running worker has no task running or reserved (`inspect active/reserved`)."""
    inspect = app.control.inspect([hostname], timeout=2)
    active, reserved = inspect.active() or {}, inspect.reserved() or {}
    return hostname in active and not active[hostname] and not reserved.get(hostname)


def count_thread_hops(monkeypatch) -> list[str]:
    """From now on, the functions run in a thread (asgiref's sync_to_async), in order."""
    hops: list[str] = []
    call = sync.SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await call(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted)
    return hops


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """A DATABASE_URL for the test database pytest-django created, for child processes."""
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{settings['NAME']}"


class Process:
    """A child process of the platform (worker, web server) with its log kept on disk."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait(5)
        self._log.close()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def launch_web(
    env: dict[str, str], log_dir: Path, name: str = "web"
) -> tuple[Process, str, Callable[[], bool]]:
    """A uvicorn serving the project on a free port: (process, base URL, is-it-up check)."""
    port = free_port()
    argv = python(
        *f"-m uvicorn beamclaw.asgi:application --host 127.0.0.1 --port {port} "
        "--log-level warning".split()
    )
    process = Process(name, argv, env, log_dir)
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.alive(), f"{name} exited:\n{process.log()[-3000:]}"
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return process, base_url, healthy


def start_web(env: dict[str, str], log_dir: Path, name: str = "web") -> tuple[Process, str]:
    """launch_web, returning once /healthz answers."""
    process, base_url, healthy = launch_web(env, log_dir, name)
    wait_until(healthy, timeout=30, message=f"{name} to answer /healthz")
    return process, base_url


# --- Turns -----------------------------------------------------------------------------


def make_agent(tenant, model_server, slug: str = "ops", **fields):
    ProviderCredentialFactory(
        tenant=tenant, provider="openai", api_key="sk-test", base_url=model_server.url_openai
    )
    defaults = {"provider": "openai", "model": "fake-1", "system_prompt": "You are a test."}
    return AgentFactory(tenant=tenant, slug=slug, **{**defaults, **fields})


def send(tenant_fixture, key: str, content: str, **extra):
    response = tenant_fixture.client.post(
        f"/api/v1/sessions/{key}/messages", {"content": content, **extra}, format="json"
    )
    assert response.status_code in (200, 202), response.json()
    return response.json()


def wait_for_turn(turn_id: int, timeout: float = 30) -> Turn:
    def finished():
        turn = Turn.objects.get(pk=turn_id)
        return turn if turn.status in FINAL_STATUSES else None

    return wait_until(finished, timeout=timeout, message=f"turn {turn_id} to finish")


def wait_for_status(turn_id: int, status: str, timeout: float = 20) -> Turn:
    return wait_until(
        lambda: Turn.objects.filter(pk=turn_id, status=status).first(),
        timeout=timeout,
        message=f"turn {turn_id} to be {status}",
    )


def conversation(key: str) -> list[tuple[int, str, str]]:
    return list(
        Message.objects.filter(session__key=key, seq__isnull=False)
        .order_by("seq")
        .values_list("seq", "role", "content")
    )
