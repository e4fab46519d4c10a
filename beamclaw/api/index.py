"""GET /api/v1/: where everything is, so the address `make run` prints leads somewhere."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

# Resource name -> (URL name, what it holds).
RESOURCES = {
    "tenant": ("tenant", "your tenant and its limits"),
    "usage": ("usage", "tokens and cost per day, agent and model"),
    "agents": ("agent-list", "agents: list, create; /agents/{slug} for one"),
    "providers": ("provider-list", "model provider credentials"),
    "sessions": ("session-list", "sessions; /sessions/{key}/messages to talk to an agent"),
    "cron_jobs": ("cron-job-list", "scheduled messages"),
    "ops_workers": ("ops-workers", "running workers (staff only)"),
    "ops_capacity": ("ops-capacity", "workers each shard needs (staff only)"),
}
# Addresses with an id in them; the client fills in the braces.
TEMPLATES = {
    "turn": "/api/v1/turns/{id}",
    "turn_events": "/api/v1/turns/{id}/events",
    "session_messages": "/api/v1/sessions/{key}/messages",
}


class ResourceSerializer(serializers.Serializer):
    url = serializers.URLField()
    description = serializers.CharField()


class ApiIndexView(APIView):
    """The API's resources and documentation; needs no key (it lists addresses only)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        operation_id="api_index",
        responses=inline_serializer(
            "ApiIndex",
            {
                "resources": serializers.DictField(child=ResourceSerializer()),
                "templates": serializers.DictField(child=serializers.CharField()),
                "docs": serializers.URLField(),
                "schema": serializers.URLField(),
                "authentication": serializers.CharField(),
            },
        ),
    )
    def get(self, request: HttpRequest) -> Response:
        absolute = request.build_absolute_uri
        resources = {
            name: {"url": absolute(reverse(url_name)), "description": description}
            for name, (url_name, description) in RESOURCES.items()
        }
        return Response(
            {
                "resources": resources,
                "templates": TEMPLATES,
                "docs": absolute(reverse("docs")),
                "schema": absolute(reverse("schema")),
                "authentication": "Authorization: Bearer <api key>",
            }
        )
