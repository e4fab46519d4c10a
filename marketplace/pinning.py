"""Pinning a package-backed turn to one version (installed into the turn loop by
MarketplaceConfig.ready: agents.runtime.agent_settings).

The first start of a turn records the installation's version then; every later start of
the same turn (a retry after a crash, a resume after a park or a hand-over) reads that
record back, so the turn finishes on the version it began with however many times the
installation moved meanwhile. Versions never change, so their settings are cached.
"""

from __future__ import annotations

import copy
from functools import lru_cache

from agents.models import Agent, Turn

from .installing import installation_fields
from .models import Installation, PackageVersion, TurnPin


@lru_cache(maxsize=512)
def _manifest(version_id: int) -> dict:
    return PackageVersion.objects.values_list("manifest", flat=True).get(pk=version_id)


def pin(turn: Turn) -> Agent:
    """The agent as the turn's pinned version sets it up (a copy: the row is not changed).
    An agent whose installation is gone runs as it is."""
    installation = Installation.objects.filter(agent_id=turn.agent_id).first()
    if installation is None:
        return turn.agent
    pinned, _ = TurnPin.objects.get_or_create(
        turn_id=turn.pk, defaults={"version_id": installation.version_id}
    )
    agent = copy.copy(turn.agent)
    for name, value in installation_fields(installation, _manifest(pinned.version_id)).items():
        setattr(agent, name, value)
    return agent
