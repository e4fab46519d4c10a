"""Encryption at rest for secrets we must use later (provider keys, bot tokens)."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        # Derived from SECRET_KEY so a dev setup needs no extra key; production sets
        # FERNET_KEYS (newest first) so SECRET_KEY can rotate without losing secrets.
        derived = hashlib.sha256(f"beamclaw-fernet:{secret_key}".encode()).digest()
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    return MultiFernet([Fernet(k) for k in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FERNET_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(token: str) -> str:
    return _current().decrypt(token.encode()).decode() if token else ""
