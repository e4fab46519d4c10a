"""Publishing, browsing and installing packages through the API, as two tenants would:
one publishes, the other installs; every refusal has its code and stores nothing."""

from __future__ import annotations

import copy
import io
import json
import tarfile

import pytest

from agents.models import Agent
from marketplace.models import Installation, Package, PackageVersion

pytestmark = pytest.mark.django_db

BASE = {
    "format": 1,
    "name": "helper",
    "version": "1.0.0",
    "summary": "Helps with words.",
    "system_prompt": "You help with words (v1).",
    "model": {"choice": "installer"},
    "builtin_tools": ["current_time"],
    "permissions": {"platform_tools": ["current_time"]},
    "pricing": {"model": "free"},
    "changelog": "First.",
}


def manifest(version: str = "1.0.0", **changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(version=version, **changes)
    return data


def publish(tenant, version: str = "1.0.0", *, slug: str = "helper", **changes):
    body = {"manifest": manifest(version, name=slug, **changes)}
    return tenant.client.post(f"/api/v1/packages/words/{slug}/versions", body, format="json")


@pytest.fixture
def publisher(acme):
    response = acme.client.put("/api/v1/publisher", {"handle": "words"}, format="json")
    assert response.status_code == 200, response.json()
    return acme


def install(tenant, version: str = "latest", **extra):
    body = {"package": "words/helper", "version": version, **extra}
    return tenant.client.post("/api/v1/installations", body, format="json")


def error(response, status: int) -> str:
    assert response.status_code == status, response.json()
    return response.json()["error"]["code"]


def test_a_published_package_is_listed_installed_and_followed_to_new_versions(publisher, globex):
    assert publish(publisher).status_code == 201
    listed = globex.client.get("/api/v1/marketplace", {"search": "words"}).json()["results"]
    assert [(p["name"], p["latest_version"], p["install_count"]) for p in listed] == [
        ("words/helper", "1.0.0", 0)
    ]

    response = install(globex, "^1.0", agent="wordsmith")
    assert response.status_code == 201, response.json()
    installed = response.json()
    assert (installed["version"], installed["spec"], installed["state"]) == (
        "1.0.0",
        "^1.0",
        "active",
    )
    assert installed["granted_permissions"] == {"platform_tools": ["current_time"]}
    agent = Agent.objects.get(tenant=globex.tenant, slug="wordsmith")
    assert agent.system_prompt == "You help with words (v1)."

    # A compatible version reaches the installation at once, with no restart.
    assert (
        publish(publisher, "1.1.0", system_prompt="You help with words (v1.1).").status_code == 201
    )
    current = globex.client.get(f"/api/v1/installations/{installed['id']}").json()
    assert (current["version"], current["previous_version"]) == ("1.1.0", "1.0.0")
    agent.refresh_from_db()
    assert agent.system_prompt == "You help with words (v1.1)."

    # A version outside the range does not.
    assert publish(publisher, "2.0.0").status_code == 201
    assert globex.client.get(f"/api/v1/installations/{installed['id']}").json()["version"] == (
        "1.1.0"
    )
    entry = globex.client.get("/api/v1/marketplace/words/helper").json()
    assert [v["version"] for v in entry["versions"]] == ["2.0.0", "1.1.0", "1.0.0"]
    assert (entry["latest_version"], entry["install_count"]) == ("2.0.0", 1)


def test_a_version_that_widens_permissions_or_price_waits_for_consent(publisher, globex):
    publish(publisher)
    installed = install(globex, "^1").json()

    wider = {"platform_tools": ["current_time"], "memory": True}
    assert publish(publisher, "1.1.0", permissions=wider).status_code == 201
    waiting = globex.client.get(f"/api/v1/installations/{installed['id']}").json()
    assert (waiting["state"], waiting["version"], waiting["pending_version"]) == (
        "pending_consent",
        "1.0.0",
        "1.1.0",
    )
    preview = globex.client.post(
        f"/api/v1/installations/{installed['id']}/upgrade", {"dry_run": True}, format="json"
    ).json()
    assert preview["diff"]["permissions_added"] == {"memory": True}
    assert preview["diff"]["needs_consent"] is True
    assert preview["installation"]["version"] == "1.0.0"  # a dry run moves nothing

    consented = globex.client.post(f"/api/v1/installations/{installed['id']}/consent").json()
    assert (consented["state"], consented["version"], consented["pending_version"]) == (
        "active",
        "1.1.0",
        None,
    )
    assert consented["granted_permissions"]["memory"] is True

    paid = {"model": "per_call", "per_call_micros": 1000}
    publish(publisher, "1.2.0", permissions=wider, pricing=paid)
    assert globex.client.get(f"/api/v1/installations/{installed['id']}").json()["state"] == (
        "pending_consent"
    )


def test_yanked_versions_are_skipped_by_ranges_but_not_by_an_exact_pin(publisher, globex):
    publish(publisher)
    publish(publisher, "1.1.0")
    follower = install(globex, "^1", agent="follower").json()
    assert follower["version"] == "1.1.0"

    yank = publisher.client.post(
        "/api/v1/packages/words/helper/versions/1.1.0/yank", {"reason": "broken"}, format="json"
    )
    assert yank.json()["status"] == "yanked"
    # The installation on the yanked version moves back to what its range picks now.
    assert globex.client.get(f"/api/v1/installations/{follower['id']}").json()["version"] == (
        "1.0.0"
    )
    assert install(globex, "^1", agent="ranged").json()["version"] == "1.0.0"
    assert install(globex, "==1.1.0", agent="pinned").json()["version"] == "1.1.0"

    publisher.client.post("/api/v1/packages/words/helper/versions/1.1.0/unyank")
    assert install(globex, "^1", agent="again").json()["version"] == "1.1.0"


def test_upgrade_rollback_and_uninstall(publisher, globex):
    publish(publisher)
    installed = install(globex, "==1.0.0").json()
    publish(publisher, "1.1.0")
    assert globex.client.get(f"/api/v1/installations/{installed['id']}").json()["version"] == (
        "1.0.0"
    )  # pinned

    moved = globex.client.post(
        f"/api/v1/installations/{installed['id']}/upgrade", {"version": "^1"}, format="json"
    ).json()
    assert (moved["installation"]["version"], moved["installation"]["spec"]) == ("1.1.0", "^1")
    back = globex.client.post(f"/api/v1/installations/{installed['id']}/rollback").json()
    assert (back["version"], back["spec"]) == ("1.0.0", "==1.0.0")

    assert globex.client.delete(f"/api/v1/installations/{installed['id']}").status_code == 204
    assert not Installation.objects.exists()
    assert not Agent.objects.filter(tenant=globex.tenant, slug="helper").exists()


def test_versions_are_never_reused_or_lowered(publisher):
    publish(publisher, "1.2.0")

    assert error(publish(publisher, "1.2.0"), 409) == "version_exists"
    assert error(publish(publisher, "1.2.0+build.7"), 409) == "version_exists"
    assert error(publish(publisher, "1.1.9"), 409) == "version_not_newer"
    publisher.client.post("/api/v1/packages/words/helper/versions/1.2.0/yank")
    assert error(publish(publisher, "1.2.0"), 409) == "version_exists"  # even after a yank
    assert PackageVersion.objects.count() == 1


@pytest.mark.parametrize(
    ("changes", "status", "code", "field"),
    [
        ({"version": "1.0"}, 400, "invalid_manifest", "version"),
        ({"version": "01.0.0"}, 400, "invalid_manifest", "version"),
        ({"colour": "red"}, 400, "invalid_manifest", "colour"),
        ({"permissions": {"root": True}}, 400, "invalid_manifest", "permissions"),
        ({"builtin_tools": ["no_such_tool"]}, 400, "invalid_manifest", "builtin_tools[0]"),
        ({"name": "other"}, 400, "manifest_name_mismatch", "name"),
        (
            {"sub_agents": [{"package": "nobody/nothing", "version": "^1"}]},
            400,
            "sub_agent_not_found",
            "sub_agents[0].package",
        ),
    ],
)
def test_a_bad_manifest_is_refused_naming_its_field_and_nothing_is_stored(
    publisher, changes, status, code, field
):
    data = manifest(**{k: v for k, v in changes.items() if k != "version"})
    data.update(changes)
    response = publisher.client.post(
        "/api/v1/packages/words/helper/versions", {"manifest": data}, format="json"
    )

    assert error(response, status) == code
    assert response.json()["error"]["details"]["field"].startswith(field)
    assert not Package.objects.exists()


def _archive(members: dict[str, bytes], *, link: str = "") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return raw.getvalue()


PYTHON_TOOL = {
    "kind": "python",
    "name": "count",
    "description": "Count words.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    "entry_point": "tools.words:count",
}


def _publish_with_artifact(tenant, artifact: bytes):
    upload = io.BytesIO(artifact)
    upload.name = "artifact.tar.gz"
    body = {"manifest": json.dumps(manifest(tools=[PYTHON_TOOL])), "artifact": upload}
    return tenant.client.post("/api/v1/packages/words/helper/versions", body, format="multipart")


def test_an_artifact_is_checked_before_anything_is_stored(publisher):
    code = "def count(text):\n    return len(text.split())\n"
    unsafe = _archive({"../tools/words.py": code.encode()})
    linked = _archive({"tools/words.py": code.encode()}, link="tools/passwd.txt")
    missing = _archive({"tools/other.py": code.encode()})

    assert error(_publish_with_artifact(publisher, unsafe), 400) == "artifact_unsafe_path"
    assert error(_publish_with_artifact(publisher, linked), 400) == "artifact_link"
    assert error(_publish_with_artifact(publisher, missing), 400) == "entry_point_missing"
    assert not PackageVersion.objects.exists()

    good = _publish_with_artifact(publisher, _archive({"tools/words.py": code.encode()}))
    assert good.status_code == 201, good.json()
    assert len(good.json()["artifact_sha256"]) == 64


def test_an_oversized_upload_is_refused_before_it_is_read(publisher):
    response = _publish_with_artifact(publisher, b"\0" * (6 * 1024 * 1024))

    assert error(response, 413) == "upload_too_large"


def test_another_tenants_unlisted_package_and_publisher_are_not_there(publisher, globex):
    publisher.client.post(
        "/api/v1/packages/words/helper/versions",
        {"manifest": manifest(), "visibility": "unlisted"},
        format="json",
    )

    assert globex.client.get("/api/v1/marketplace").json()["results"] == []
    assert error(globex.client.get("/api/v1/marketplace/words/helper"), 404) == (
        "package_not_found"
    )
    assert error(install(globex), 404) == "package_not_found"
    # The publisher still sees and installs its own.
    assert publisher.client.get("/api/v1/marketplace/words/helper").status_code == 200
    assert install(publisher).status_code == 201
    # Nobody publishes under another tenant's handle.
    stolen = globex.client.post(
        "/api/v1/packages/words/helper/versions", {"manifest": manifest("9.0.0")}, format="json"
    )
    assert error(stolen, 404) == "publisher_not_found"
    yank = globex.client.post("/api/v1/packages/words/helper/versions/1.0.0/yank")
    assert error(yank, 404) == "package_not_found"


def test_a_spec_no_version_satisfies_is_refused(publisher, globex):
    publish(publisher)

    assert error(install(globex, "^2"), 400) == "no_matching_version"
    assert error(install(globex, "^^2"), 400) == "invalid_version_spec"
    assert not Agent.objects.filter(tenant=globex.tenant).exists()


def test_a_handle_belongs_to_one_tenant(publisher, globex):
    taken = globex.client.put("/api/v1/publisher", {"handle": "words"}, format="json")
    assert error(taken, 409) == "publisher_handle_taken"
    second = publisher.client.put("/api/v1/publisher", {"handle": "other"}, format="json")
    assert error(second, 409) == "publisher_exists"


def _tool(**changes) -> dict:
    return {**PYTHON_TOOL, **changes}


HTTP_TOOL = {
    "kind": "http",
    "name": "lookup",
    "description": "Look a word up.",
    "parameters": {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    },
    "method": "GET",
    "url": "https://api.example.com/{word}",
    "allowed_hosts": ["api.example.com"],
}
HTTP_PERMISSIONS = {"platform_tools": ["current_time"], "http_hosts": ["api.example.com"]}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        # A regular expression hidden under a key no validator reads, reached by a $ref.
        (
            {
                "tools": [
                    _tool(
                        parameters={
                            "type": "object",
                            "x": {"pattern": "^(a+)+$"},
                            "properties": {"q": {"$ref": "#/x"}},
                        }
                    )
                ]
            },
            "tools[0].parameters",
        ),
        (
            {
                "tools": [{**HTTP_TOOL, "url": "https://[api.example.com/{word}"}],
                "permissions": HTTP_PERMISSIONS,
            },
            "tools[0].url",
        ),
        (
            {
                "tools": [{**HTTP_TOOL, "headers": {"Authorization": "Bearer sk-live-123"}}],
                "permissions": HTTP_PERMISSIONS,
            },
            "tools[0].headers",
        ),
        ({"name": "a" * 64}, "name"),
    ],
)
def test_hostile_manifests_are_refused_with_a_field_not_a_crash(publisher, changes, field):
    data = manifest(**changes)
    response = publisher.client.post(
        f"/api/v1/packages/words/{data['name']}/versions", {"manifest": data}, format="json"
    )

    assert error(response, 400) == "invalid_manifest"
    assert response.json()["error"]["details"]["field"].startswith(field)


def test_hostile_requests_get_4xx_not_500(publisher, globex):
    deep = '{"manifest": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = publisher.client.post(
        "/api/v1/packages/words/helper/versions", deep, content_type="application/json"
    )
    assert response.status_code == 400, response.content[:300]
    publish(publisher)

    assert error(install(globex, agent="My_Agent"), 400) == "validation_error"
    assert error(install(globex, spend_cap_micros=10**30), 400) == "validation_error"
    assert globex.client.get("/api/v1/marketplace/words/helper/versions/1%000").status_code == 404
    chained_long_names = io.BytesIO()
    with tarfile.open(fileobj=chained_long_names, mode="w:gz") as tar:
        header = tarfile.TarInfo("././@LongLink")
        header.type, header.size = tarfile.GNUTYPE_LONGNAME, 512
        for _ in range(5000):
            tar.fileobj.write(header.tobuf(format=tarfile.USTAR_FORMAT) + b"a" * 512)
    refused = _publish_with_artifact(publisher, chained_long_names.getvalue())
    assert error(refused, 400) == "artifact_invalid"
