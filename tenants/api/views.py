"""The tenant API: the caller's own tenant, its limits and its metered usage."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from beamclaw.api.validation import validated
from tenants import selectors
from tenants.api.auth import request_tenant

from .serializers import TenantSerializer, UsageQuerySerializer, UsageSerializer


class CurrentTenantView(APIView):
    """The tenant your API key belongs to, with its limits."""

    @extend_schema(responses=TenantSerializer, operation_id="tenant_retrieve")
    def get(self, request):
        return Response(TenantSerializer(request_tenant(request)).data)


USAGE_QUERY_CODES = dict.fromkeys(["start", "end", "group_by"], "invalid_usage_query")


class UsageView(APIView):
    """Your tokens and cost over a period, in total and per agent, model or day.

    Every successful model call is one record, priced when it was made. The period is
    `start` (included) to `end` (excluded); it defaults to this month so far (UTC).
    """

    @extend_schema(
        parameters=[UsageQuerySerializer], responses=UsageSerializer, operation_id="usage_retrieve"
    )
    def get(self, request):
        query = validated(UsageQuerySerializer(data=request.query_params), USAGE_QUERY_CODES)
        summary = selectors.usage_summary(request_tenant(request), **query)
        return Response(UsageSerializer(summary).data)
