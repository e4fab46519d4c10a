"""Every error, whatever raised it, has the shape {"error": {"code", "message", "details"}}."""

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert error["message"]
    return error


def test_unknown_url_is_a_json_404():
    assert_error_shape(Client().get("/no/such/page"), 404, "not_found")


def test_unknown_object_is_a_json_404(acme):
    assert_error_shape(acme.client.get("/api/v1/agents/nope"), 404, "agent_not_found")


def test_wrong_method_is_405(acme):
    assert_error_shape(acme.client.delete("/api/v1/tenant"), 405, "method_not_allowed")


def test_missing_credentials_are_401():
    assert_error_shape(Client().get("/api/v1/tenant"), 401, "authentication_required")


def test_suspended_tenant_is_403(acme):
    acme.tenant.is_active = False
    acme.tenant.save()
    assert_error_shape(acme.client.get("/api/v1/tenant"), 403, "tenant_suspended")


def test_validation_errors_are_400_with_field_details(acme):
    response = acme.client.post(
        "/api/v1/agents", {"slug": "Not A Slug!", "max_iterations": 0}, format="json"
    )
    error = assert_error_shape(response, 400, "validation_error")
    assert "slug" in error["details"]
    assert "max_iterations" in error["details"]


def test_malformed_json_is_400(acme):
    response = acme.client.post("/api/v1/agents", "{not json", content_type="application/json")
    assert_error_shape(response, 400, "malformed_request")


def test_throttled_requests_are_429_with_retry_after(acme, settings):
    rest = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "2/min"}}
    with override_settings(REST_FRAMEWORK=rest):
        statuses = [acme.client.get("/api/v1/tenant").status_code for _ in range(3)]
        response = acme.client.get("/api/v1/tenant")
    assert statuses[:2] == [200, 200]
    error = assert_error_shape(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert error["details"]["retry_after"] >= 1


@pytest.mark.urls("tests.boom_urls")
@override_settings(DEBUG=False)
def test_unexpected_exceptions_are_500_without_internals(acme):
    response = acme.client.get("/boom")
    error = assert_error_shape(response, 500, "internal_error")
    assert "secret detail" not in response.content.decode()
    assert error["details"] == {}


@pytest.mark.urls("tests.boom_urls")
@override_settings(DEBUG=False)
def test_unexpected_exceptions_outside_the_api_are_500_json():
    client = Client(raise_request_exception=False)
    assert_error_shape(client.get("/plain-boom"), 500, "internal_error")
