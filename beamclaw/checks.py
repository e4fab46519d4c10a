"""Django's deploy checks for the middleware that beamclaw.middleware runs under its own
names.

Django finds its security, clickjacking and CSRF middleware by dotted name in MIDDLEWARE
and checks HSTS, SSL redirects, nosniff, X-Frame-Options and the CSRF cookie only when the
name is there. Our middleware runs those same classes under other names (so API requests
stay on the event loop), so `check --deploy` runs Django's checks as if the names it
looks for were listed.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage
from django.core.checks.security import base, csrf

STANDS_FOR = {
    "beamclaw.middleware.SecurityHeaders": ["django.middleware.security.SecurityMiddleware"],
    "beamclaw.middleware.FrameOptions": ["django.middleware.clickjacking.XFrameOptionsMiddleware"],
    "beamclaw.middleware.SessionPaths": ["django.middleware.csrf.CsrfViewMiddleware"],
}
GATED_CHECKS = [
    base.check_sts,
    base.check_sts_include_subdomains,
    base.check_sts_preload,
    base.check_content_type_nosniff,
    base.check_ssl_redirect,
    base.check_xframe_deny,
    base.check_referrer_policy,
    base.check_cross_origin_opener_policy,
    csrf.check_csrf_cookie_secure,
]


def check_standing_in_middleware(app_configs, **kwargs) -> list[CheckMessage]:
    """Registered by BeamclawConfig.ready() (deploy checks)."""
    listed = list(settings.MIDDLEWARE)
    named = listed + [name for ours in listed for name in STANDS_FOR.get(ours, [])]
    if named == listed:
        return []
    # Checks run once, before anything serves: swapping the setting for their duration
    # is seen by nothing else.
    settings.MIDDLEWARE = named
    try:
        return [message for check in GATED_CHECKS for message in check(app_configs)]
    finally:
        settings.MIDDLEWARE = listed
