"""The run's own database: created empty, migrated, dropped at the end.

On PostgreSQL it is `beamclaw_bench_<pid>` on DATABASE_URL's server; on SQLite a file in a
temporary directory. This process's Django connection is pointed at it too (the way
Django's test runner switches to its test database), so the developer's data is never
read or written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from agents.models import Message, Session, Turn
from tenants.models import Tenant

PREFIX = "beamclaw_bench_"


@dataclass
class BenchDatabase:
    url: str  # DATABASE_URL for the platform's processes
    name: str  # database name, or the SQLite file
    original_name: str
    migrate_seconds: float = 0.0

    @property
    def vendor(self) -> str:
        return connection.vendor

    @classmethod
    def create(cls) -> BenchDatabase:
        original = connection.settings_dict["NAME"]
        if connection.vendor == "postgresql":
            name = f"{PREFIX}{os.getpid()}"
            with _admin_connection() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
                admin.execute(f'CREATE DATABASE "{name}"')
            url = urlunsplit(urlsplit(settings.DATABASE_URL)._replace(path=f"/{name}"))
        elif connection.vendor == "sqlite":
            name = os.path.join(tempfile.mkdtemp(prefix="beamclaw-bench-"), "bench.sqlite3")
            url = f"sqlite:///{name}"
        else:
            raise RuntimeError(f"bench runs on PostgreSQL or SQLite, not {connection.vendor}")
        database = cls(url=url, name=name, original_name=original)
        _point_connection_at(name)
        return database

    def migrate(self) -> None:
        started = time.monotonic()
        call_command("migrate", interactive=False, verbosity=0)
        self.migrate_seconds = time.monotonic() - started

    def drop(self) -> None:
        _point_connection_at(self.original_name)
        if self.vendor == "postgresql":
            with _admin_connection() as admin:
                # FORCE ends backends a killed worker may have left behind (PostgreSQL 13+).
                admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        else:
            shutil.rmtree(os.path.dirname(self.name), ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Bench databases of earlier runs that did not clean up (killed, say)."""
        if self.vendor != "postgresql":
            return []
        with _admin_connection() as admin:
            rows = admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
                [f"{PREFIX}%", self.name],
            ).fetchall()
        return [row[0] for row in rows]


def _admin_connection():
    """Autocommit psycopg connection to the server's `postgres` database."""
    import psycopg

    config = connection.settings_dict
    return psycopg.connect(
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


def _point_connection_at(name: str) -> None:
    connection.close()
    if hasattr(connection, "close_pool"):
        connection.close_pool()  # the pool keeps connections to the old database
    connection.settings_dict["NAME"] = name
    settings.DATABASES["default"]["NAME"] = name


def insert_idle_sessions(rows: list[tuple[int, int, str]]) -> float:
    """Insert sessions (tenant id, agent id, key) with no history, fast: COPY on
    PostgreSQL, executemany on SQLite. Every other column gets the value a new Session
    would have. Returns the seconds it took."""
    started = time.monotonic()
    now = timezone.now()
    template = Session(tenant_id=0, agent_id=0, key="", created_at=now, last_activity_at=now)
    fields = [f for f in Session._meta.concrete_fields if not f.primary_key]
    columns = [f.column for f in fields]
    varying = [columns.index(name) for name in ("tenant_id", "agent_id", "key")]
    postgres = connection.vendor == "postgresql"
    if postgres:
        row = [_copy_text(f.value_from_object(template)) for f in fields]
    else:
        row = [f.get_db_prep_save(f.value_from_object(template), connection) for f in fields]
    chunks = (rows[start : start + 50_000] for start in range(0, len(rows), 50_000))
    with transaction.atomic(), connection.cursor() as cursor:
        for chunk in chunks:
            values = []
            for session in chunk:
                for index, value in zip(varying, session, strict=True):
                    row[index] = str(value) if postgres else value
                values.append("\t".join(row) if postgres else tuple(row))
            if postgres:
                copy_sql = f"COPY agents_session ({', '.join(columns)}) FROM STDIN"
                with cursor.cursor.copy(copy_sql) as copy:
                    copy.write("\n".join(values) + "\n")
            else:
                placeholders = ", ".join(["%s"] * len(columns))
                cursor.executemany(
                    f"INSERT INTO agents_session ({', '.join(columns)}) VALUES ({placeholders})",
                    values,
                )
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE agents_session")  # as autovacuum soon would
    return time.monotonic() - started


def postgres_pids() -> list[int]:
    """PostgreSQL's processes serving the run's database: its backends, and the server's
    own (checkpointer, WAL writer, ...), which have no database. Backends of other
    databases on a shared server are someone else's work; they fall under `other`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL"
        )
        return [pid for (pid,) in cursor.fetchall()]


def delete_tenants(ids: list[int]) -> None:
    """Delete tenants with everything they own. Their sessions without history go first in
    one statement (the ORM would load each of a million idle sessions to cascade), then
    the other sessions with their turns and messages (they protect the agents), then the
    tenants."""
    if not ids:
        return
    marks = ", ".join(["%s"] * len(ids))
    sessions, turns, messages = (m._meta.db_table for m in (Session, Turn, Message))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {sessions} WHERE tenant_id IN ({marks}) "
            f"AND NOT EXISTS (SELECT 1 FROM {turns} t WHERE t.session_id = {sessions}.id) "
            f"AND NOT EXISTS (SELECT 1 FROM {messages} m WHERE m.session_id = {sessions}.id) "
            f"AND NOT EXISTS (SELECT 1 FROM {sessions} c WHERE c.parent_id = {sessions}.id)",
            ids,
        )
        Session.objects.filter(tenant_id__in=ids).delete()
        Tenant.objects.filter(pk__in=ids).delete()


def _copy_text(value: object) -> str:
    """A value in COPY's text format (no value here needs escaping)."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


@contextlib.contextmanager
def closed_after():
    """For a thread that queries the database: give its connection back when done."""
    try:
        yield
    finally:
        connection.close()
