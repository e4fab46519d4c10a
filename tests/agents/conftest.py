"""Fixtures shared by the agent tests: the fake chat API, emptied for each test, and a
Slack binding and a Discord binding of tenant acme's agent `ops`."""

import pytest
from nacl.signing import SigningKey

from testing.fake_chat import FakeChannelApi
from tests.agents.channels.webhooks import BOT_TOKEN, DISCORD_BOT_TOKEN, SIGNING_SECRET
from tests.factories import ChannelBindingFactory


@pytest.fixture
def channel_api(channel_api_server, settings) -> FakeChannelApi:
    """The session's fake Slack/Discord API, emptied; this process posts to it too."""
    channel_api_server.reset()
    settings.SLACK_API_BASE_URL = channel_api_server.slack_url
    settings.DISCORD_API_BASE_URL = channel_api_server.discord_url
    return channel_api_server


@pytest.fixture
def slack_binding(acme, agent):
    return ChannelBindingFactory(
        tenant=acme.tenant,
        kind="slack",
        agent="ops",
        external_id="T1",
        signing_secret=SIGNING_SECRET,
        bot_token=BOT_TOKEN,
    )


@pytest.fixture
def discord_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def discord_binding(acme, agent, discord_key):
    return ChannelBindingFactory(
        tenant=acme.tenant,
        kind="discord",
        agent="ops",
        external_id="A1",
        public_key=discord_key.verify_key.encode().hex(),
        bot_token=DISCORD_BOT_TOKEN,
    )
