"""The event streams against their schema: every event a real turn streams (a tool call,
an answer, a failure) is documented in the served schema's `x-events`, and its `data`
has the documented shape, with no field the schema does not name."""

from __future__ import annotations

import httpx
import jsonschema
import pytest

from agents.models import Turn
from agents.runtime import events as turn_events
from beamclaw.redis import get_redis
from tests.agents.api.test_live_events import stream_turn
from tests.support import send, wait_for_turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def as_json_schema(node):
    """OpenAPI 3.0's `nullable: true` written the JSON Schema way."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {name: as_json_schema(value) for name, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def documented_events(base_url: str) -> tuple[dict, dict]:
    schema = httpx.get(f"{base_url}/api/schema/", params={"format": "json"}, timeout=30).json()
    operation = schema["paths"]["/api/v1/turns/{turn_id}/events"]["get"]
    events = operation["responses"]["200"]["content"]["text/event-stream"]["x-events"]
    return events, as_json_schema(schema["components"])


def assert_documented(event: dict, events: dict, components: dict) -> None:
    name, data = event["event"], event["data"]
    assert name in events, f"{name} is not documented"
    ref = events[name]["$ref"]
    jsonschema.validate(data, {"$ref": ref, "components": components})
    shape = components["schemas"][ref.rsplit("/", 1)[1]]
    undocumented = set(data) - set(shape["properties"])
    assert not undocumented, f"{name} sends undocumented fields {undocumented}"


def test_every_streamed_event_has_the_documented_name_and_data(web, acme, agent, model):
    agent.tools = ["calculator"]
    agent.save(update_fields=["tools"])
    model.add_rule(
        match=r"6\*7",
        tool_calls=[{"name": "calculator", "arguments": {"expression": "6*7"}}],
        times=1,
    )
    model.add_rule(match=r"42", reply="It is 42.")
    model.add_rule(match=r"fail", status=401)
    events, components = documented_events(web)

    answered = stream_turn(web, acme, send(acme, "agent:ops:main", "what is 6*7?")["turn"]["id"])
    failed = stream_turn(web, acme, send(acme, "agent:ops:main", "fail please")["turn"]["id"])

    seen = {event["event"] for event in answered + failed}
    assert {"tool.started", "tool.finished", "message.completed", "turn.failed"} <= seen
    for event in answered + failed:
        assert_documented(event, events, components)


def test_a_finished_turn_whose_stream_expired_still_ends_with_a_documented_event(
    web, acme, agent, model
):
    turn_id = send(acme, "agent:ops:main", "hello")["turn"]["id"]
    wait_for_turn(turn_id)
    get_redis().delete(turn_events.turn_stream(Turn.objects.get(pk=turn_id)))
    events, components = documented_events(web)

    streamed = stream_turn(web, acme, turn_id)

    assert [event["event"] for event in streamed] == ["turn.finished"]
    assert_documented(streamed[0], events, components)
