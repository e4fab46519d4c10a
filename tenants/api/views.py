from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.auth import request_tenant

from .serializers import TenantSerializer


class CurrentTenantView(APIView):
    """The tenant your API key belongs to, with its limits."""

    @extend_schema(responses=TenantSerializer, operation_id="tenant_retrieve")
    def get(self, request):
        return Response(TenantSerializer(request_tenant(request)).data)
