"""adrf's APIView with DRF's checks (authentication, permissions, throttles) run on the
event loop: adrf runs `initial()` in a thread and, from there, hops back to the loop for
throttles even when none is async. Here each check says how it waits: an authenticator
or throttle with an async variant (`aauthenticate`, `aallow_request`) is awaited, any
other runs in a thread of its own; permissions are plain checks, run inline. A view
that needs a step before its handler overrides `ainitial`: `initial` is not called.
"""

from __future__ import annotations

from adrf.views import APIView
from asgiref.sync import iscoroutinefunction, sync_to_async
from rest_framework import exceptions


class AsyncAPIView(APIView):
    async def async_dispatch(self, request, *args, **kwargs):
        # adrf's async_dispatch, with `await self.ainitial(...)` for its threaded initial().
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            await self.ainitial(request, *args, **kwargs)
            method = request.method.lower()
            handler = (
                getattr(self, method, self.http_method_not_allowed)
                if method in self.http_method_names
                else self.http_method_not_allowed
            )
            if iscoroutinefunction(handler):
                response = await handler(request, *args, **kwargs)
            else:
                response = await sync_to_async(handler)(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    async def ainitial(self, request, *args, **kwargs) -> None:
        """DRF's `initial()`, in its order, on the event loop."""
        self.format_kwarg = self.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(
            request
        )
        request.version, request.versioning_scheme = self.determine_version(
            request, *args, **kwargs
        )
        await self.aperform_authentication(request)
        await self.acheck_permissions(request)
        await self.acheck_throttles(request)

    async def aperform_authentication(self, request) -> None:
        for authenticator in request.authenticators:
            authenticate = getattr(authenticator, "aauthenticate", None) or sync_to_async(
                authenticator.authenticate
            )
            try:
                user_auth = await authenticate(request)
            except exceptions.APIException:
                request._not_authenticated()
                raise
            if user_auth is not None:
                request._authenticator = authenticator
                request.user, request.auth = user_auth
                return
        request._not_authenticated()

    async def acheck_permissions(self, request) -> None:
        for permission in self.get_permissions():
            allowed = permission.has_permission(request, self)
            if iscoroutinefunction(permission.has_permission):
                allowed = await allowed
            if not allowed:
                self.permission_denied(
                    request,
                    message=getattr(permission, "message", None),
                    code=getattr(permission, "code", None),
                )

    async def acheck_throttles(self, request) -> None:
        durations = []
        for throttle in self.get_throttles():
            allow = getattr(throttle, "aallow_request", None) or sync_to_async(
                throttle.allow_request
            )
            if not await allow(request, self):
                durations.append(throttle.wait())
        if durations:
            self.throttled(request, max((d for d in durations if d is not None), default=None))
