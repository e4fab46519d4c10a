"""Sub-agents: a turn hands tasks to other agents, waits without a thread, and resumes."""

import pytest

from agents.models import Message, Session, Turn
from tests.support import make_agent, send, wait_for_turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def spawn(agent: str, task: str) -> dict:
    return {"name": "spawn_agent", "arguments": {"agent": agent, "task": task}}


def tool_results(record) -> str:
    return " | ".join(m["content"] for m in record["messages"] if m["role"] == "tool")


@pytest.fixture
def team(acme, model):
    boss = make_agent(acme.tenant, model, slug="boss", tools=["spawn_agent"])
    make_agent(acme.tenant, model, slug="helper")
    return boss


def test_a_parent_spawns_three_children_in_parallel_and_answers_with_all_results(acme, team, model):
    model.add_rule(match=r"^research", tool_calls=[spawn("helper", f"task {i}") for i in range(3)])
    model.add_rule(match=r"^task", latency=1.0)  # the children's own model calls
    model.add_rule(match=r"^echo: task", reply=tool_results)  # the parent, resumed

    parent = wait_for_turn(send(acme, "agent:boss:main", "research this")["turn"]["id"], 40)

    assert parent.status == "succeeded"
    final = Message.objects.filter(turn=parent, role="assistant").order_by("-seq").first()
    assert final.content == "echo: task 0 | echo: task 1 | echo: task 2"
    children = list(Turn.objects.filter(parent_turn=parent).order_by("parent_tool_call_id"))
    assert [c.status for c in children] == ["succeeded"] * 3
    keys = sorted(c.session.key for c in children)
    assert keys == [f"agent:helper:sub:{parent.pk}:{n}" for n in (1, 2, 3)]
    assert all(c.session.parent.key == "agent:boss:main" for c in children)
    child_calls = [r for r in model.requests if r["messages"][-1]["content"].startswith("task")]
    assert len(child_calls) == 3
    first_done = min(r["finished_at"] for r in child_calls)
    assert all(r["started_at"] < first_done for r in child_calls)  # they overlapped


def test_a_child_that_tries_to_spawn_gets_the_depth_error(acme, team, model):
    make_agent(acme.tenant, model, slug="eager", tools=["spawn_agent"])
    model.add_rule(match=r"^delegate", tool_calls=[spawn("eager", "spawn more")])
    model.add_rule(match=r"^spawn more", tool_calls=[spawn("helper", "too deep")])

    parent = wait_for_turn(send(acme, "agent:boss:main", "delegate")["turn"]["id"], 30)

    assert parent.status == "succeeded"
    child = Turn.objects.get(parent_turn=parent)
    assert child.status == "succeeded"
    refusal = Message.objects.get(turn=child, role="tool")
    assert refusal.content.startswith("error: tool_error")
    assert "depth" in refusal.content
    assert not Session.objects.filter(key__contains=":sub:" + str(child.pk)).exists()


def test_a_failing_child_gives_the_parent_an_error_result(acme, team, model):
    model.add_rule(match=r"^try", tool_calls=[spawn("helper", "fail please")])
    model.add_rule(match=r"^fail please", status=401)

    parent = wait_for_turn(send(acme, "agent:boss:main", "try it")["turn"]["id"], 30)

    assert parent.status == "succeeded"
    child = Turn.objects.get(parent_turn=parent)
    assert (child.status, child.error_code) == ("failed", "provider_auth_failed")
    result = Message.objects.get(turn=parent, role="tool")
    assert result.content.startswith("error: subagent_failed: provider_auth_failed")


def test_an_unknown_child_agent_is_a_tool_error_not_a_crash(acme, team, model):
    model.add_rule(match=r"^ask", tool_calls=[spawn("nobody", "hello")])

    parent = wait_for_turn(send(acme, "agent:boss:main", "ask nobody")["turn"]["id"], 30)

    assert parent.status == "succeeded"
    assert Message.objects.get(turn=parent, role="tool").content.startswith("error: tool_error")


def test_a_message_sent_while_the_parent_waits_runs_after_it(acme, team, model):
    model.add_rule(match=r"^slow job", tool_calls=[spawn("helper", "task slow")])
    model.add_rule(match=r"^task slow", latency=1.5)

    first = send(acme, "agent:boss:main", "slow job")["turn"]["id"]
    second = send(acme, "agent:boss:main", "and then")["turn"]["id"]

    assert wait_for_turn(first, 30).status == "succeeded"
    assert wait_for_turn(second, 30).status == "succeeded"
    assert Turn.objects.get(pk=first).finished_at <= Turn.objects.get(pk=second).started_at
