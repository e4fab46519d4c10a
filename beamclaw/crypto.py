"""Encryption at rest for secrets we must use later (provider keys, bot tokens)."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


def _keys(configured: tuple[str, ...], secret_key: str) -> tuple[str, ...]:
    if configured:
        return configured
    # Only with DEBUG on (settings refuse to start without FERNET_KEYS otherwise): derived
    # from SECRET_KEY so a dev setup needs no extra key. Production sets FERNET_KEYS (newest
    # first) so SECRET_KEY can rotate without losing secrets.
    derived = hashlib.sha256(f"beamclaw-fernet:{secret_key}".encode()).digest()
    return (base64.urlsafe_b64encode(derived).decode(),)


def active_keys() -> list[str]:
    """The Fernet keys in use, newest first: for a child process that must read our secrets."""
    return list(_keys(tuple(settings.FERNET_KEYS), settings.SECRET_KEY))


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in _keys(keys, secret_key)])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FERNET_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(token: str) -> str:
    return _current().decrypt(token.encode()).decode() if token else ""
