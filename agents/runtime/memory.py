"""The `session_memory` tool's store: JSON values kept on the session row."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agents.models import Session


class SessionMemory:
    def __init__(self, session_id: int):
        self.session_id = session_id

    def items(self) -> dict[str, Any]:
        return Session.objects.values_list("memory", flat=True).get(pk=self.session_id) or {}

    def get(self, key: str) -> Any | None:
        return self.items().get(key)

    def _update(self, change) -> None:
        with transaction.atomic():
            session = Session.objects.select_for_update().only("memory").get(pk=self.session_id)
            memory = dict(session.memory or {})
            change(memory)
            Session.objects.filter(pk=self.session_id).update(memory=memory)

    def set(self, key: str, value: Any) -> None:
        self._update(lambda memory: memory.__setitem__(key, value))

    def delete(self, key: str) -> None:
        self._update(lambda memory: memory.pop(key, None))
