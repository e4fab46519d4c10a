import pytest
from django.test import Client

from tests.support import free_port

pytestmark = pytest.mark.django_db


def test_healthz_answers_while_the_process_is_alive():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_database_redis_and_broker_answer():
    response = Client().get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}


def test_readyz_is_503_naming_redis_when_redis_is_unreachable(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = Client().get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert "redis" in error["message"]
    assert error["details"]["checks"]["redis"].startswith("error")
    assert error["details"]["checks"]["database"] == "ok"
