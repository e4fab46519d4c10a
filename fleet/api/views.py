"""Operator endpoints: for the platform's staff (Django staff users), not for tenants.

Authenticate with a staff user's session (the admin's login) or HTTP Basic.
"""

from __future__ import annotations

from drf_spectacular.authentication import BasicScheme
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.authentication import (
    BasicAuthentication,
    SessionAuthentication,
    get_authorization_header,
)
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from beamclaw import login_throttle
from beamclaw.api.errors import DomainAPIException
from fleet import capacity, registry


class RunningTaskSerializer(serializers.Serializer):
    turn_id = serializers.IntegerField(required=False, help_text="set for a run_turn task")
    session_id = serializers.IntegerField(required=False, help_text="set for resume_session")


class WorkerSerializer(serializers.Serializer):
    hostname = serializers.CharField(help_text="Celery node name, e.g. `worker1@host`")
    pid = serializers.IntegerField()
    shard = serializers.CharField(help_text="the tenant queues it consumes")
    state = serializers.ChoiceField(
        choices=["active", "draining", "standby"],
        help_text="standby: started and consuming nothing until its supervisor needs it",
    )
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


class ThrottledBasicAuthentication(BasicAuthentication):
    """HTTP Basic, refused with a 429 for a while after too many wrong passwords from the
    caller's address or for the user name (beamclaw.login_throttle)."""

    def authenticate_credentials(self, userid, password, request=None):
        try:
            login_throttle.start_attempt(request, userid)
        except login_throttle.LoginLocked as locked:
            raise DomainAPIException(
                "too_many_failed_logins",
                "Too many failed logins from this address or for this user; retry after "
                "the number of seconds in Retry-After.",
                status=429,
                details={"retry_after": locked.retry_after},
                retry_after=locked.retry_after,
            )
        authenticated = super().authenticate_credentials(userid, password, request)
        login_throttle.forget_attempt(request, userid)
        return authenticated


class ThrottledBasicScheme(BasicScheme):
    """The schema shows it as the HTTP Basic it is."""

    target_class = "fleet.api.views.ThrottledBasicAuthentication"


class IsStaff(BasePermission):
    """Staff users only. Anyone signed in who is not staff, or a caller with a tenant API key
    (`Bearer`), is told so with 403 `staff_only`: asking them to authenticate (401) would
    suggest that their key is wrong, not that no tenant key opens these endpoints."""

    message = "Operator endpoints are for the platform's staff; a tenant API key cannot use them."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if user is not None and user.is_authenticated and user.is_staff:
            return True
        signed_in = user is not None and user.is_authenticated
        scheme = get_authorization_header(request).split(b" ", 1)[0].lower()
        if signed_in or scheme == b"bearer":
            raise exceptions.PermissionDenied(self.message, code="staff_only")
        return False  # anonymous: 401 with the Basic challenge


class StaffOnly:
    # Basic first: an anonymous caller gets 401 with a WWW-Authenticate challenge.
    authentication_classes = [ThrottledBasicAuthentication, SessionAuthentication]
    permission_classes = [IsStaff]
    throttle_classes: list = []


class WorkerListView(StaffOnly, APIView):
    """Every worker with a live heartbeat (it renews its entry every few seconds; a dead
    one drops out within three heartbeats), warm standbys included."""

    @extend_schema(responses=WorkerListSerializer, operation_id="ops_workers_list", tags=["ops"])
    def get(self, request):
        workers = registry.list_workers(with_standby=True)
        return Response(WorkerListSerializer({"workers": workers}).data)


class TenantCapacitySerializer(serializers.Serializer):
    tenant = serializers.CharField()
    shard = serializers.CharField()
    running = serializers.IntegerField()
    runnable = serializers.IntegerField()
    parked = serializers.IntegerField()
    parked_by = serializers.CharField(help_text="concurrency, budget, suspended, or empty")
    oldest_runnable_age_seconds = serializers.FloatField()


class ShardCapacitySerializer(serializers.Serializer):
    shard = serializers.CharField(help_text="`k-of-N` (hash shard k/N) or `dedicated-<tenant>`")
    desired_workers = serializers.IntegerField(help_text="scale to this (stabilised)")
    raw_desired_workers = serializers.IntegerField()
    current_workers = serializers.IntegerField()
    reason = serializers.CharField(
        help_text="load, oldest_wait, provider_ceiling, min_workers or max_workers"
    )
    needed_threads = serializers.FloatField()
    ceiling_workers = serializers.IntegerField(allow_null=True)
    running = serializers.IntegerField()
    runnable = serializers.IntegerField()
    parked = serializers.IntegerField()
    arrival_rate = serializers.FloatField(help_text="turns per second, last minute")
    service_seconds = serializers.FloatField()
    calls_per_turn = serializers.FloatField()
    oldest_runnable_age_seconds = serializers.FloatField()
    tenants = TenantCapacitySerializer(many=True)


class CapacitySerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField()
    policy = serializers.DictField()
    shards = ShardCapacitySerializer(many=True)
    by_shard = serializers.DictField(
        child=serializers.IntegerField(), help_text="desired workers per shard"
    )


class CapacityView(StaffOnly, APIView):
    """How many workers each shard needs now, with its inputs and per-tenant detail.

    For an outside autoscaler: KEDA's metrics-api scaler reads `by_shard.<k-of-N>` (see
    deploy/). Computed by celery-beat every CAPACITY_INTERVAL_SECONDS; computed on the
    spot if no report is stored.
    """

    @extend_schema(responses=CapacitySerializer, operation_id="ops_capacity", tags=["ops"])
    def get(self, request):
        return Response(CapacitySerializer(capacity.latest_report()).data)
