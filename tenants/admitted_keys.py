"""The API keys this process admitted in the last API_KEY_CACHE_SECONDS, so a client's
requests in a burst cost one key lookup, not one each.

Only admitted keys are kept, by the SHA-256 of their secret (as the database stores it),
with their tenant: a cached key opens its own tenant and nothing else. A revocation or a
tenant change made in this process forgets every entry at once (the receivers below);
one made in another process (another web server, the admin of another, a command) ends
access here when the entry expires, within API_KEY_CACHE_SECONDS. Open streams and
`wait` requests are re-checked against the database on their own schedule
(STREAM_ACCESS_CHECK_SECONDS), not here.
"""

from __future__ import annotations

import copy
import threading
import time

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import ApiKey, Tenant
from .services import admitted_api_key, hash_secret, touch_api_key

# A bound on memory: past it the oldest entries go (a process sees few keys in 2 s).
MAX_ENTRIES = 10_000

_lock = threading.Lock()
_admitted: dict[str, tuple[float, ApiKey]] = {}  # secret's hash -> (expiry, key with tenant)


def _copy(api_key: ApiKey) -> ApiKey:
    """A copy of the key and its tenant for one request: requests never share instances."""
    fresh = copy.copy(api_key)
    fresh.tenant = copy.copy(api_key.tenant)
    return fresh


def recall(secret: str) -> ApiKey | None:
    """The key for this secret if this process admitted it moments ago; else None (ask
    `admit`). No database, no I/O: callable on the event loop."""
    entry = _admitted.get(hash_secret(secret))
    if entry is None or entry[0] < time.monotonic():
        return None
    return _copy(entry[1])


def admit(secret: str) -> ApiKey:
    """The key this secret lets in (tenants.services.admitted_api_key, which raises
    ApiKeyRefused), from the cache or the database; an admitted key is remembered."""
    if (api_key := recall(secret)) is not None:
        return api_key
    api_key = admitted_api_key(secret)
    touch_api_key(api_key)  # at most once a minute per key: cached entries are fresh
    ttl = settings.API_KEY_CACHE_SECONDS
    if ttl > 0:
        with _lock:
            if len(_admitted) >= MAX_ENTRIES:
                for stale in list(_admitted)[: MAX_ENTRIES // 10]:
                    _admitted.pop(stale, None)
            _admitted[api_key.secret_hash] = (time.monotonic() + ttl, _copy(api_key))
    return api_key


def forget_all() -> None:
    """Forget every admitted key: the next request of each is looked up again."""
    with _lock:
        _admitted.clear()


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
def _forget_on_change(**kwargs) -> None:
    # Revocation, suspension and limit changes are rare: forgetting everything is simplest.
    # Again after the commit: a request may have cached the old row in between.
    forget_all()
    transaction.on_commit(forget_all)
