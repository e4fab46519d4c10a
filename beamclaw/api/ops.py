"""Operator endpoints: for the platform's staff (Django staff users), not for tenants.

Authenticate with a staff user's session (the admin's login) or HTTP Basic.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from beamclaw import workers


class RunningTaskSerializer(serializers.Serializer):
    turn_id = serializers.IntegerField(required=False, help_text="set for a run_turn task")
    session_id = serializers.IntegerField(required=False, help_text="set for resume_session")


class WorkerSerializer(serializers.Serializer):
    hostname = serializers.CharField(help_text="Celery node name, e.g. `worker1@host`")
    pid = serializers.IntegerField()
    shard = serializers.CharField(help_text="the tenant queues it consumes")
    state = serializers.ChoiceField(choices=["active", "draining"])
    started_at = serializers.DateTimeField()
    last_seen = serializers.DateTimeField(help_text="its last heartbeat")
    in_flight = serializers.IntegerField(help_text="sessions it is running now")
    running = RunningTaskSerializer(many=True)
    concurrency = serializers.IntegerField(help_text="pool threads")
    expected_drain_seconds = serializers.FloatField(
        help_text="about one model call while it runs anything: how long a drain takes now"
    )


class WorkerListSerializer(serializers.Serializer):
    workers = WorkerSerializer(many=True)


class StaffOnly:
    # Basic first: an anonymous caller gets 401 with a WWW-Authenticate challenge.
    authentication_classes = [BasicAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]
    throttle_classes: list = []


class WorkerListView(StaffOnly, APIView):
    """Every worker with a live heartbeat (it renews its entry every few seconds; a dead
    one drops out within three heartbeats)."""

    @extend_schema(responses=WorkerListSerializer, operation_id="ops_workers_list", tags=["ops"])
    def get(self, request):
        return Response(WorkerListSerializer({"workers": workers.list_workers()}).data)


def workers_admin_view(request):
    """The admin's page of running workers (linked from the admin index)."""
    from django.conf import settings
    from django.contrib import admin
    from django.template.response import TemplateResponse

    context = {
        **admin.site.each_context(request),
        "title": "Workers",
        "workers": workers.list_workers(),
        "heartbeat": settings.WORKER_HEARTBEAT_SECONDS,
    }
    return TemplateResponse(request, "admin/beamclaw/workers.html", context)
