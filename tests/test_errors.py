"""Every error, whatever raised it, has the shape {"error": {"code", "message", "details"}}."""

import json
import logging

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


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/api/v2/", "/no/such/page"])
def test_unknown_urls_are_json_404_even_with_debug_on(settings, path):
    settings.DEBUG = True  # Django's own 404 page would list every URL pattern

    response = Client().get(path)

    assert_error_shape(response, 404, "not_found")
    assert b"urlpatterns" not in response.content and b"api/schema" not in response.content


def test_an_address_missing_its_slash_is_still_redirected(settings):
    settings.DEBUG = True

    response = Client().get("/api/docs")

    assert response.status_code == 301
    assert response["Location"] == "/api/docs/"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/turns/%C2%B2",  # "²".isdigit() is true, int("²") fails
        "/api/v1/turns/%D9%A3",  # an Arabic-Indic three
        "/api/v1/turns/99999999999999999999999",  # past a bigint
        "/api/v1/cron-jobs/-1",
        "/api/v1/turns/1e3/events",
    ],
)
def test_ids_in_paths_are_ascii_digits_that_fit_a_bigint_else_404(acme, path):
    assert_error_shape(acme.client.get(path), 404, "not_found")


def test_unknown_object_is_a_json_404(acme):
    assert_error_shape(acme.client.get("/api/v1/agents/nope"), 404, "agent_not_found")


def test_wrong_method_is_405(acme):
    assert_error_shape(acme.client.delete("/api/v1/tenant"), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_wrong_method_outside_the_api_is_a_json_405_with_allow(path):
    response = Client().post(path)

    error = assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"] and "GET" in error["message"]


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


@pytest.mark.parametrize("depth", [100_000, 65])
def test_json_nested_too_deep_is_400(acme, depth):
    body = "[" * depth + "]" * depth

    response = acme.client.post("/api/v1/agents", body, content_type="application/json")

    error = assert_error_shape(response, 400, "json_too_deep")
    assert "64" in error["message"]


def test_json_nested_within_the_limit_is_parsed(acme):
    schema = {"type": "object"}
    for _ in range(30):
        schema = {"type": "object", "properties": {"inner": schema}}

    response = acme.client.post(
        "/api/v1/agents", {"slug": "deep", "tools": [], "extra": schema}, format="json"
    )

    assert response.status_code == 201, response.content


def test_a_body_over_the_upload_limit_is_413(acme, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = json.dumps({"slug": "big", "system_prompt": "x" * 2_000})

    response = acme.client.post("/api/v1/agents", body, content_type="application/json")

    error = assert_error_shape(response, 413, "request_too_large")
    assert "1000 bytes" in error["message"]


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
def test_unexpected_exceptions_are_500_without_internals_with_a_reference_in_the_logs(acme, caplog):
    with caplog.at_level(logging.ERROR):
        response = acme.client.get("/boom")

    error = assert_error_shape(response, 500, "internal_error")
    assert "secret detail" not in response.content.decode()
    reference = error["details"]["reference"]
    assert set(error["details"]) == {"reference"} and reference in error["message"]
    assert_logged_with_traceback(caplog, reference)
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def assert_logged_with_traceback(caplog, reference: str) -> None:
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]
    assert logged[0].exc_info and "secret detail" in str(logged[0].exc_info[1])


@pytest.mark.urls("tests.boom_urls")
@override_settings(DEBUG=False)
def test_unexpected_exceptions_outside_the_api_are_500_json_with_a_reference(caplog):
    client = Client(raise_request_exception=False)

    with caplog.at_level(logging.ERROR):
        response = client.get("/plain-boom")

    error = assert_error_shape(response, 500, "internal_error")
    assert "secret detail" not in response.content.decode()
    assert_logged_with_traceback(caplog, error["details"]["reference"])
    # Logged once, with the reference: not a second time by Django without it.
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
