"""`manage.py bootstrap_demo`: the demo tenant, API key, admin user and agent `make run` shows.

Safe to run again: each object is created once. The API key and admin password are kept only
in var/demo.json (mode 0600); a later run reuses them after checking they still work.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from agents.models import Agent
from agents.services import create_agent
from beamclaw.redis import key_prefix
from tenants.models import Tenant
from tenants.services import ApiKeyRefused, admitted_api_key, create_tenant, issue_api_key

TENANT_SLUG = "demo"
ADMIN_USERNAME = "admin"
AGENT_SLUG = "assistant"
AGENT_TOOLS = ["current_time", "calculator", "session_memory"]


def demo_file() -> Path:
    return Path(settings.VAR_DIR) / "demo.json"


def demo_provider() -> tuple[str, str]:
    """A real model when the machine has a provider key, else the offline one."""
    if settings.OPENAI_API_KEY:
        return "openai", os.environ.get("OPENAI_MODEL") or "gpt-4o-mini"
    if settings.ANTHROPIC_API_KEY:
        return "anthropic", os.environ.get("ANTHROPIC_MODEL") or "claude-3-5-haiku-latest"
    return "offline", "offline-1"


def load_saved(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save_private(path: Path, data: dict) -> None:
    """Write `data` as JSON only the owner can read, replacing the file in one step."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        json.dump(data, file, indent=2)
        file.write("\n")
    os.replace(tmp, path)


def authenticates(secret: str, tenant: Tenant) -> bool:
    """Whether the API would accept this key for the tenant: the checks its authentication
    makes."""
    try:
        api_key = admitted_api_key(secret)
    except ApiKeyRefused:
        return False
    return api_key.tenant_id == tenant.pk


class Command(BaseCommand):
    help = (
        "Create (once) the demo tenant, an API key, the admin superuser and the demo agent; "
        "keep the key and the admin password in var/demo.json."
    )

    def handle(self, *args, **options):
        path = demo_file()
        saved = load_saved(path)
        tenant, tenant_status = self._tenant()
        api_key, key_status = self._api_key(tenant, saved.get("api_key", ""))
        password, admin_status = self._admin(saved.get("admin_password", ""))
        agent, agent_status = self._agent(tenant)
        save_private(
            path,
            {
                "tenant": tenant.slug,
                "api_key": api_key,
                "admin_username": ADMIN_USERNAME,
                "admin_password": password,
                "agent": agent.slug,
                "provider": agent.provider,
                "model": agent.model,
                # `make run` shows it: where this installation's keys are in its Redis.
                "redis_keys": f"{key_prefix()}*",
            },
        )

        self._report("tenant", f'"{tenant.slug}"', tenant_status)
        self._report("API key", f"{api_key[:11]}...", key_status)
        self._report("admin user", f'"{ADMIN_USERNAME}"', admin_status)
        self._report("agent", f'"{agent.slug}" ({agent.provider}/{agent.model})', agent_status)
        self.stdout.write(f"Saved to {path} (readable only by you):")
        self.stdout.write(f"  API key         {api_key}")
        self.stdout.write(f"  admin password  {password}")
        if not tenant.is_active:
            self.stdout.write(self.style.WARNING("The demo tenant is suspended: its key gets 403."))
        provider, model = demo_provider()
        if agent_status != "created" and (agent.provider, agent.model) != (provider, model):
            self.stdout.write(
                f"Note: a new demo agent would get {provider}/{model} on this machine; "
                f'"{agent.slug}" keeps what it was created with (change it in the admin).'
            )

    def _report(self, kind: str, name: str, status: str) -> None:
        style = self.style.SUCCESS if status == "created" else (lambda text: text)
        self.stdout.write(f"  {kind:<11} {name:<46} {style(status)}")

    def _tenant(self) -> tuple[Tenant, str]:
        tenant = Tenant.objects.filter(slug=TENANT_SLUG).first()
        if tenant is not None:
            return tenant, "exists"
        return create_tenant(slug=TENANT_SLUG, name="Demo"), "created"

    def _api_key(self, tenant: Tenant, saved: str) -> tuple[str, str]:
        # The API shows a key once and stores only its hash, so var/demo.json is its only copy.
        if saved and authenticates(saved, tenant):
            return saved, "reused from demo.json"
        issued = issue_api_key(tenant=tenant, name="demo (make run)")
        return issued.secret, "replaced (the saved one no longer works)" if saved else "created"

    def _admin(self, saved: str) -> tuple[str, str]:
        User = get_user_model()
        user = User.objects.filter(username=ADMIN_USERNAME).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
            return password, "created"
        if saved and user.check_password(saved) and user.is_active and user.is_superuser:
            return saved, "reused from demo.json"
        # The demo admin's password is the one in demo.json; make your own superuser to differ.
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.is_active = user.is_staff = user.is_superuser = True
        user.save()
        return password, "password reset (it did not match demo.json)"

    def _agent(self, tenant: Tenant) -> tuple[Agent, str]:
        agent = Agent.objects.filter(
            tenant=tenant, slug=AGENT_SLUG, deleted_at__isnull=True
        ).first()
        if agent is not None:
            return agent, "exists"
        provider, model = demo_provider()
        agent = create_agent(
            tenant=tenant,
            slug=AGENT_SLUG,
            name="Assistant",
            system_prompt="You are a helpful assistant.",
            provider=provider,
            model=model,
            tools=AGENT_TOOLS,
        )
        return agent, "created"
