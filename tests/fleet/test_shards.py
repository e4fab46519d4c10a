"""Workers consume a bounded shard of tenant queues; new tenants reach the right ones."""

import os
import uuid

import pytest

from fleet.shards import Shard, parse_shard, shard_index
from tenants.services import create_tenant
from tests.conftest import start_worker
from tests.support import active_queues, wait_until


def test_shards_split_tenants_stably_and_dedicated_tenants_skip_them():
    slugs = [f"tenant-{i}" for i in range(200)]
    shards = [Shard(index=k, count=4) for k in range(4)]

    owners = [[s for s in shards if s.owns(slug, dedicated=False)] for slug in slugs]

    assert all(len(o) == 1 for o in owners)  # every tenant has exactly one shard
    assert all(shard_index(slug, 4) == shard_index(slug, 4) for slug in slugs)
    sizes = [sum(1 for o in owners if o[0] is s) for s in shards]
    assert min(sizes) > 30  # roughly even
    assert not any(s.owns("big", dedicated=True) for s in shards)
    assert Shard.from_options(None, "big,huge").owns("big", dedicated=True)
    assert not Shard.from_options(None, "big").owns("small", dedicated=False)


@pytest.mark.parametrize("bad", ["2", "a/b", "3/3", "-1/2", "0/0"])
def test_a_bad_shard_option_says_what_is_wrong(bad):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(bad)


def _slug_in_shard(shard: int, count: int, prefix: str) -> str:
    return next(f"{prefix}{i}" for i in range(1000) if shard_index(f"{prefix}{i}", count) == shard)


@pytest.mark.django_db(transaction=True)
def test_a_shard_worker_consumes_only_its_tenants_old_and_new(platform_env, log_dir):
    mine_before = create_tenant(slug=_slug_in_shard(1, 2, "old")).slug
    theirs_before = create_tenant(slug=_slug_in_shard(0, 2, "old")).slug
    worker = start_worker(platform_env, log_dir, name="shard1", extra=["--shard", "1/2"])
    hostname = f"shard1@{os.uname().nodename}"
    try:
        queues = active_queues(hostname)
        assert f"tenant.{mine_before}" in queues
        assert f"tenant.{theirs_before}" not in queues

        mine_new = create_tenant(slug=_slug_in_shard(1, 2, "new")).slug
        theirs_new = create_tenant(slug=_slug_in_shard(0, 2, "new")).slug

        wait_until(
            lambda: f"tenant.{mine_new}" in active_queues(hostname),
            timeout=10,
            message="the new tenant's queue on its shard's worker",
        )
        assert f"tenant.{theirs_new}" not in active_queues(hostname)
    finally:
        worker.stop()


@pytest.mark.django_db(transaction=True)
def test_a_new_tenants_first_turn_starts_within_two_seconds_on_running_workers(worker, model):
    from tests.conftest import TenantFixture
    from tests.support import make_agent, send, wait_for_turn

    newcomer = TenantFixture(f"new{uuid.uuid4().hex[:8]}")  # announced as it is created
    make_agent(newcomer.tenant, model)

    turn = wait_for_turn(send(newcomer, "agent:ops:main", "hello")["turn"]["id"])

    assert turn.status == "succeeded"
    assert (turn.started_at - turn.created_at).total_seconds() < 2.0
