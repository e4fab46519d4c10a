"""Telemetry: the handlers registered at startup, their isolation, the event logs."""

import json
import logging

import pytest
from django.apps import apps

from beamclaw import event_log, metrics, telemetry
from beamclaw.logging import JsonFormatter
from beamclaw.telemetry import emit
from fleet import registry

pytestmark = pytest.mark.django_db


def provider_call(tenant, **overrides):
    emit(
        "provider.call",
        **{
            "tenant_id": tenant.pk,
            "tenant": tenant.slug,
            "agent_id": None,
            "agent": None,
            "turn_id": None,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "input_tokens": 10,
            "output_tokens": 2,
            "latency_s": 0.1,
            "attempts": 1,
            "ok": True,
            "error_code": "",
            **overrides,
        },
    )


def test_only_metrics_and_logs_are_registered_once_at_startup():
    for app in apps.get_app_configs():
        app.ready()  # a second ready() must not double-count

    # Telemetry counts and logs (metrics, the worker registry's call timings, log lines);
    # money and replies are never a handler's job.
    handlers = {event: list(found) for event, found in telemetry._handlers.items() if found}
    assert handlers == {
        telemetry.ALL: [metrics.observe, event_log.log_event],
        "provider.call": [registry.observe_provider_call],
    }


def test_a_raising_handler_stops_neither_the_other_handlers_nor_the_caller(acme, caplog):
    seen = []

    def broken(event, metadata):
        raise RuntimeError("handler bug")

    def after(event, metadata):
        seen.append(event)

    # Registered before `after` and before the every-event handlers (metrics, logs).
    telemetry.register(broken, "provider.call")
    telemetry.register(after, "provider.call")
    try:
        provider_call(acme.tenant)  # must return normally
    finally:
        telemetry.unregister(broken)
        telemetry.unregister(after)

    assert seen == ["provider.call"]
    assert "telemetry handler broken failed on provider.call" in caplog.text
    assert any(r.name == "beamclaw.events" for r in caplog.records)  # the log handler ran


def test_events_are_logged_with_their_metadata_as_fields(acme, caplog):
    caplog.set_level(logging.INFO, logger="beamclaw.events")

    provider_call(acme.tenant)
    provider_call(acme.tenant, ok=False, error_code="provider_timeout", input_tokens=0)
    emit(
        "limit.rejected",
        tenant_id=acme.tenant.pk,
        tenant="acme",
        limit="budget",
        turn_id=None,
        detail="2000000 tokens a day",
    )

    ok, failed, rejected = [r for r in caplog.records if r.name == "beamclaw.events"]
    assert (ok.levelno, failed.levelno, rejected.levelno) == (
        logging.INFO,
        logging.WARNING,
        logging.WARNING,
    )
    assert ok.event == "provider.call" and ok.tenant == "acme" and ok.input_tokens == 10
    assert failed.error_code == "provider_timeout"
    assert rejected.limit == "budget" and "limit=budget" in rejected.getMessage()


def test_the_json_log_format_carries_the_metadata(acme, caplog):
    caplog.set_level(logging.INFO, logger="beamclaw.events")
    provider_call(acme.tenant, model="gpt-4o")

    record = next(r for r in caplog.records if r.name == "beamclaw.events")
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "provider.call"
    assert line["level"] == "INFO"
    assert (line["tenant"], line["model"], line["output_tokens"]) == ("acme", "gpt-4o", 2)
