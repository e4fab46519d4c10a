"""Which installation this process belongs to: the key that starts every Redis key.

Read once per process from the database (the row a migration created) and cached;
BEAMCLAW_INSTALLATION_ID overrides it (the test suite, whose database is flushed
between tests while its worker processes keep running).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.signals import setting_changed
from django.db import IntegrityError, connection
from django.dispatch import receiver

_lock = threading.Lock()
_cached: str | None = None


def new_installation_key() -> str:
    return secrets.token_hex(6)


def _load_from_database() -> str:
    # Models can be imported only once the apps are loaded; this module loads before.
    from beamclaw.models import Installation

    try:
        row, _ = Installation.objects.get_or_create(pk=1, defaults={"key": new_installation_key()})
    except IntegrityError:  # another process created it at the same moment
        row = Installation.objects.get(pk=1)
    return row.key


def _load_in_a_thread() -> str:
    # Django refuses database calls on an event loop's thread; this runs once per process.
    def load() -> str:
        try:
            return _load_from_database()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(load).result()


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def installation_id() -> str:
    """This installation's key (`3f9a1c0b7d2e`), the same in every process it runs."""
    global _cached
    if settings.INSTALLATION_ID:
        return settings.INSTALLATION_ID
    if _cached is None:
        with _lock:
            if _cached is None:
                load = _load_in_a_thread if _on_event_loop() else _load_from_database
                _cached = load()
    return _cached


@receiver(setting_changed)
def _forget_installation(setting: str, **kwargs) -> None:
    global _cached
    if setting == "INSTALLATION_ID":
        _cached = None
