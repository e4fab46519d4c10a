from datetime import UTC, datetime, timedelta

from agents.models import Session, Turn
from agents.runtime.cancellation import cancel_key
from agents.runtime.events import session_stream, turn_stream


def test_a_row_with_a_reused_id_never_shares_streams_or_flags_with_the_old_one():
    # A database recreated against the same Redis hands out id 1 again.
    old_time = datetime(2026, 1, 1, tzinfo=UTC)
    new_time = old_time + timedelta(seconds=5)
    old = Turn(pk=1, tenant_id=1, created_at=old_time)
    new = Turn(pk=1, tenant_id=1, created_at=new_time)

    assert turn_stream(old) != turn_stream(new)
    assert cancel_key(old) != cancel_key(new)
    assert session_stream(Session(pk=1, tenant_id=1, created_at=old_time)) != session_stream(
        Session(pk=1, tenant_id=1, created_at=new_time)
    )
