"""Operators see the marketplace in the admin, and revoke a version there (final)."""

from __future__ import annotations

import pytest

from marketplace.models import Installation, PackageVersion, VersionStatus

from .test_api import install, publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(acme, globex):
    acme.client.put("/api/v1/publisher", {"handle": "words"}, format="json")
    publish(acme)
    publish(acme, "1.1.0")
    install(globex, "^1")
    return PackageVersion.objects.get(version="1.1.0")


def test_every_marketplace_page_of_the_admin_renders(admin_client, published):
    for page in ["publisher", "package", "packageversion", "installation", "usageevent"]:
        listing = admin_client.get(f"/admin/marketplace/{page}/")
        assert listing.status_code == 200, page
    detail = admin_client.get(f"/admin/marketplace/packageversion/{published.pk}/change/")
    assert detail.status_code == 200
    assert b"1.1.0" in detail.content


def test_staff_revoke_a_version_and_installations_move_off_it(admin_client, published):
    response = admin_client.post(
        "/admin/marketplace/packageversion/",
        {"action": "revoke", "_selected_action": [published.pk]},
    )

    assert response.status_code == 302
    published.refresh_from_db()
    assert published.status == VersionStatus.REVOKED
    assert Installation.objects.get().version.version == "1.0.0"
