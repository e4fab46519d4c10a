"""The request pipeline's own middleware: every one runs on the event loop, so an API
request under ASGI never crosses to a thread before its view.

Django runs a `MiddlewareMixin` middleware's hooks through `sync_to_async` under ASGI,
and a sync-only one (WhiteNoise) moves the whole rest of the chain to a thread; each
crossing costs a thread hop. Here the hooks that do no I/O (security headers, slash
redirects, X-Frame-Options) run inline, static files are looked up only under
STATIC_URL, and the session, CSRF, auth and messages middleware run only on the paths
that use them (SESSION_PATHS: the admin and the ops API's staff login).
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from whitenoise.middleware import WhiteNoiseMiddleware


class _Inline:
    """Runs a Django middleware's process_request/process_response on the event loop:
    only for hooks that do no I/O, where a thread hop buys nothing."""

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityHeaders(_Inline, SecurityMiddleware):
    """Django's SecurityMiddleware (HTTPS redirect, HSTS, nosniff, referrer and
    cross-origin-opener policies): header arithmetic only."""


class SlashRedirects(_Inline, CommonMiddleware):
    """Django's CommonMiddleware (APPEND_SLASH, DISALLOWED_USER_AGENTS): URL resolution
    only."""


class FrameOptions(_Inline, XFrameOptionsMiddleware):
    """Django's XFrameOptionsMiddleware: one header."""


class _EitherMode:
    """A middleware that is async under ASGI and sync under WSGI and the test client,
    whichever its get_response is (as Django's MiddlewareMixin decides)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.__acall__(request)
        return self.sync_call(request)


class StaticFiles(_EitherMode):
    """WhiteNoise, asked only for paths under STATIC_URL. Its file lookup and response
    are sync, so a static request takes one thread hop; no other request takes any."""

    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        # WhiteNoise calls get_response for a path it has no file for: answer None, and
        # the request goes on down the chain on the event loop.
        self.whitenoise = WhiteNoiseMiddleware(get_response=lambda request: None)
        self.prefix = self.whitenoise.static_prefix

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(self.prefix):
            response = await sync_to_async(self.whitenoise)(request)
            if response is not None:
                return response
        return await self.get_response(request)

    def sync_call(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(self.prefix):
            response = self.whitenoise(request)
            if response is not None:
                return response
        return self.get_response(request)


class SessionPaths(_EitherMode):
    """Django's session, CSRF, auth and messages middleware, applied only under
    SESSION_PATHS: an API call with a key has no cookie session to load or check."""

    chain = (SessionMiddleware, CsrfViewMiddleware, AuthenticationMiddleware, MessageMiddleware)

    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        self.paths = tuple(settings.SESSION_PATHS)
        handler = get_response
        for middleware in reversed(self.chain):
            instance = middleware(handler)
            if isinstance(instance, CsrfViewMiddleware):
                self.csrf = instance
            handler = convert_exception_to_response(instance)
        self.with_session = handler
        if self.async_mode:
            self.process_view = self._aprocess_view

    def _applies(self, request: HttpRequest) -> bool:
        return request.path_info.startswith(self.paths)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if self._applies(request):
            return await self.with_session(request)
        return await self.get_response(request)

    def sync_call(self, request: HttpRequest) -> HttpResponse:
        if self._applies(request):
            return self.with_session(request)
        return self.get_response(request)

    # Django calls each middleware's process_view itself, after URL resolution: CSRF's
    # must run there, for the session paths only.
    def process_view(self, request, view_func, view_args, view_kwargs):
        if self._applies(request):
            return self.csrf.process_view(request, view_func, view_args, view_kwargs)
        return None

    async def _aprocess_view(self, request, view_func, view_args, view_kwargs):
        if self._applies(request):
            return await sync_to_async(self.csrf.process_view)(
                request, view_func, view_args, view_kwargs
            )
        return None
