"""Model factories for test data, each made through the service the platform itself uses,
so a factory keeps every invariant the code relies on: an API key is stored hashed, a
credential is encrypted and its base URL checked, a tenant is announced to the workers,
a binding's secrets are encrypted, a turn is queued as a message submission queues it.

Tests keep what they assert on explicit (`AgentFactory(tenant=..., slug="ops")`); the
factories only fill in what a test does not care about.
"""

from __future__ import annotations

import uuid

import factory
from factory.django import DjangoModelFactory

from agents import services
from agents.channels import bindings
from agents.models import Agent, ChannelBinding, ProviderCredential, Turn
from tenants import services as tenant_services
from tenants.models import ApiKey, Tenant


def _unique_slug(prefix: str) -> str:
    # Unique across runs too: Redis keys outlive a rolled-back test database.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class TenantFactory(DjangoModelFactory):
    """A tenant made by create_tenant: once committed, running workers consume its queue."""

    class Meta:
        model = Tenant

    slug = factory.LazyFunction(lambda: _unique_slug("tenant"))
    name = factory.LazyAttribute(lambda tenant: tenant.slug.title())

    @classmethod
    def _create(cls, model_class: type[Tenant], **fields) -> Tenant:
        return tenant_services.create_tenant(**fields)


class UnconsumedTenantFactory(TenantFactory):
    """A tenant saved without telling the workers: no running worker consumes its queue."""

    @classmethod
    def _create(cls, model_class: type[Tenant], **fields) -> Tenant:
        return model_class.objects.create(**fields)


class ApiKeyFactory(DjangoModelFactory):
    """An API key issued by issue_api_key (stored hashed); the whole key, shown once by the
    platform, is on the instance as `secret`."""

    class Meta:
        model = ApiKey

    tenant = factory.SubFactory(TenantFactory)
    name = "test"

    @classmethod
    def _create(cls, model_class: type[ApiKey], **fields) -> ApiKey:
        issued = tenant_services.issue_api_key(**fields)
        issued.api_key.secret = issued.secret
        return issued.api_key


class ProviderCredentialFactory(DjangoModelFactory):
    """A tenant's provider key and base URL, saved by set_provider_credential (encrypted,
    the base URL checked)."""

    class Meta:
        model = ProviderCredential

    tenant = factory.SubFactory(TenantFactory)
    provider = "openai"
    api_key = "sk-test"
    base_url = ""

    @classmethod
    def _create(cls, model_class: type[ProviderCredential], **fields) -> ProviderCredential:
        return services.set_provider_credential(**fields)


class AgentFactory(DjangoModelFactory):
    """An agent made by create_agent (validated, one live agent per slug); the model's own
    defaults otherwise, so the offline provider."""

    class Meta:
        model = Agent

    tenant = factory.SubFactory(TenantFactory)
    slug = factory.Sequence(lambda n: f"agent-{n}")

    @classmethod
    def _create(cls, model_class: type[Agent], **fields) -> Agent:
        return services.create_agent(**fields)


class ChannelBindingFactory(DjangoModelFactory):
    """A Slack or Discord binding made by create_binding (secrets encrypted at rest).
    `agent` is an Agent or the slug of the tenant's agent."""

    class Meta:
        model = ChannelBinding

    tenant = factory.SubFactory(TenantFactory)
    kind = "slack"
    agent = "ops"

    @classmethod
    def _create(cls, model_class: type[ChannelBinding], **fields) -> ChannelBinding:
        return bindings.create_binding(**fields)


class TurnFactory(DjangoModelFactory):
    """A turn queued by submit_message, as a message sent over the API queues one (its
    session made on the way); the agent named in `session_key` must exist."""

    class Meta:
        model = Turn

    tenant = factory.SubFactory(TenantFactory)
    session_key = "agent:ops:main"
    content = "hi"

    @classmethod
    def _create(cls, model_class: type[Turn], **fields) -> Turn:
        return services.submit_message(**fields).turn
