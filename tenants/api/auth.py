"""API key authentication: `Authorization: Bearer <key>` binds a request to one tenant."""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import sync_to_async
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from tenants import admitted_keys
from tenants.models import ApiKey, Tenant
from tenants.services import ApiKeyRefused


@dataclass(frozen=True)
class TenantPrincipal:
    """`request.user` for an API key: who is calling, on behalf of which tenant."""

    tenant: Tenant
    api_key: ApiKey
    is_authenticated: bool = True
    is_staff: bool = False

    @property
    def pk(self) -> int:
        return self.api_key.pk


class NotAuthenticated(exceptions.NotAuthenticated):
    default_code = "authentication_required"
    default_detail = "Send your API key as 'Authorization: Bearer <key>'."


class TenantSuspended(exceptions.PermissionDenied):
    default_code = "tenant_suspended"
    default_detail = "This tenant is suspended."


def _failed(code: str, message: str) -> exceptions.AuthenticationFailed:
    return exceptions.AuthenticationFailed(message, code=code)


class ApiKeyAuthentication(BaseAuthentication):
    """`authenticate` for sync views; `aauthenticate` for async ones (AsyncAPIView), which
    answers a key admitted moments ago on the event loop and goes to a thread only for
    the database."""

    keyword = b"bearer"

    def _secret(self, request) -> str | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword or len(header) != 2:
            raise _failed(
                "invalid_authorization_header",
                "The Authorization header must be 'Bearer <key>'.",
            )
        return header[1].decode("latin-1")

    def authenticate(self, request):
        secret = self._secret(request)
        return None if secret is None else _principal(_admit(secret))

    async def aauthenticate(self, request):
        secret = self._secret(request)
        if secret is None:
            return None
        api_key = admitted_keys.recall(secret) or await sync_to_async(_admit)(secret)
        return _principal(api_key)

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when credentials are missing or wrong.
        return 'Bearer realm="api"'


def _admit(secret: str) -> ApiKey:
    try:
        return admitted_keys.admit(secret)
    except ApiKeyRefused as refused:
        if refused.status == TenantSuspended.status_code:  # a good key, a suspended tenant
            raise TenantSuspended()
        raise _failed(refused.code, refused.message)


def _principal(api_key: ApiKey) -> tuple[TenantPrincipal, ApiKey]:
    return TenantPrincipal(tenant=api_key.tenant, api_key=api_key), api_key


class IsTenant(permissions.BasePermission):
    """Every API call needs an API key; anonymous requests get 401."""

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.user, TenantPrincipal):
            raise NotAuthenticated()
        return True


def request_tenant(request) -> Tenant:
    return request.user.tenant


class ApiKeySchema(OpenApiAuthenticationExtension):
    """Documents the Bearer API key in the OpenAPI schema."""

    target_class = "tenants.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A tenant API key."}
