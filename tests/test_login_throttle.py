"""Staff logins (the ops API's HTTP Basic, the admin's form) are refused for a while after
too many wrong passwords from one address, or for one user from many addresses, in every
web process."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections
from django.test import Client

from tests.support import start_web, wait_until

OPS_WORKERS = "/api/v1/ops/workers"
PASSWORD = "s3cret-pass"


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def ops_get(username: str, password: str, address: str = "127.0.0.1"):
    return Client(REMOTE_ADDR=address).get(OPS_WORKERS, headers=basic(username, password))


@pytest.fixture
def operator(db, settings):
    # A fast hash for the in-process tests: the default costs seconds per guess here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)


def assert_locked(response) -> None:
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == "too_many_failed_logins"
    assert "Retry-After" in error["message"]
    assert 0 < int(response["Retry-After"]) <= 300
    assert error["details"] == {"retry_after": int(response["Retry-After"])}


def test_ten_wrong_passwords_lock_the_ops_login_even_with_the_right_password(operator):
    wrong = [ops_get("operator", f"guess-{i}") for i in range(10)]

    assert {response.status_code for response in wrong} == {401}
    assert_locked(ops_get("operator", PASSWORD))
    # Per address: another name from the same address is locked too.
    get_user_model().objects.create_user("other", password=PASSWORD, is_staff=True)
    assert_locked(ops_get("other", PASSWORD))
    # From elsewhere, another user is let in.
    assert ops_get("other", PASSWORD, address="10.0.0.2").status_code == 200


def test_a_stranger_failing_for_a_user_locks_only_their_own_address(operator):
    for i in range(10):
        assert ops_get("operator", f"guess-{i}", address="203.0.113.7").status_code == 401

    assert_locked(ops_get("operator", PASSWORD, address="203.0.113.7"))
    # The staff member, from their own address, still gets in with the right password.
    assert ops_get("operator", PASSWORD, address="10.0.0.2").status_code == 200


def test_guessing_one_users_password_from_many_addresses_locks_that_user(operator, settings):
    settings.LOGIN_FAILURE_LIMIT_PER_USER = 20
    for i in range(20):
        assert ops_get("operator", "guess", address=f"10.0.1.{i}").status_code == 401

    assert_locked(ops_get("operator", PASSWORD, address="10.0.2.1"))
    assert_locked(ops_get("OPERATOR ", PASSWORD, address="10.0.2.2"))  # same name, retyped
    # Another user is not affected.
    get_user_model().objects.create_user("other", password=PASSWORD, is_staff=True)
    assert ops_get("other", PASSWORD, address="10.0.2.3").status_code == 200


def test_the_per_user_limit_across_addresses_defaults_far_above_the_per_address_one(operator):
    for i in range(30):
        assert ops_get("operator", "guess", address=f"10.0.4.{i}").status_code == 401

    assert ops_get("operator", PASSWORD, address="10.0.5.1").status_code == 200


def test_successful_logins_never_count_and_nine_failures_still_let_the_user_in(operator):
    for _ in range(9):
        assert ops_get("operator", "typo").status_code == 401

    answers = [ops_get("operator", PASSWORD).status_code for _ in range(30)]

    assert set(answers) == {200}


def test_the_lock_lifts_when_the_window_ends(operator, settings):
    settings.LOGIN_FAILURE_LIMIT = 1
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 3
    assert ops_get("operator", "guess").status_code == 401
    assert_locked(ops_get("operator", PASSWORD))

    wait_until(
        lambda: ops_get("operator", PASSWORD).status_code == 200,
        timeout=15,
        message="the lock to lift",
    )


class ShortPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """A real, slow-ish password check (tens of milliseconds), not the default's seconds."""

    iterations = 100_000


@pytest.mark.django_db(transaction=True)
def test_guesses_sent_all_at_once_get_no_more_password_checks_than_the_limit(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.ShortPBKDF2PasswordHasher"]
    get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)
    guesses = 15  # under the database pool's 16 connections
    all_at_once = threading.Barrier(guesses)

    def guess(number: int) -> int:
        all_at_once.wait(timeout=30)
        try:
            return ops_get("operator", f"guess-{number}").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(guesses) as pool:
        answers = list(pool.map(guess, range(guesses)))

    assert sorted(answers) == [401] * 10 + [429] * 5


@pytest.mark.django_db(transaction=True)
def test_failures_in_two_web_processes_add_up(platform_env, log_dir, web):
    # The default password hash, as the web processes have it.
    get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)
    second, second_url = start_web(platform_env, log_dir, name="web-login-throttle")
    try:
        for base_url in (web, second_url) * 5:
            guess = httpx.get(base_url + OPS_WORKERS, headers=basic("operator", "guess"))
            assert guess.status_code == 401

        for base_url in (web, second_url):
            locked = httpx.get(base_url + OPS_WORKERS, headers=basic("operator", PASSWORD))
            assert locked.status_code == 429
            assert locked.json()["error"]["code"] == "too_many_failed_logins"
            assert int(locked.headers["Retry-After"]) > 0
    finally:
        second.stop()


def admin_login(username: str, password: str, address: str = "127.0.0.1") -> tuple:
    client = Client(REMOTE_ADDR=address)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}
    )
    return client, response


def test_the_admin_login_form_says_so_after_ten_wrong_passwords(operator):
    for i in range(10):
        _, response = admin_login("operator", f"guess-{i}")
        assert "Please enter the correct username and password" in response.content.decode()

    client, response = admin_login("operator", PASSWORD)

    assert response.status_code == 200  # the form again, not the admin
    page = response.content.decode()
    assert "Too many failed logins from this address or for this user." in page
    assert "Try again in 5 minute(s)." in page
    assert client.get("/admin/").status_code == 302  # not logged in
    # The admin and the ops API share the count: this address is locked for both.
    assert_locked(ops_get("operator", PASSWORD))
    assert ops_get("operator", PASSWORD, address="10.0.3.1").status_code == 200


def test_the_admin_logs_a_staff_user_in_after_a_few_typos(operator):
    for _ in range(3):
        admin_login("operator", "typo")

    client, response = admin_login("operator", PASSWORD)

    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
