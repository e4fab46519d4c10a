"""A Slack binding and a Discord binding of tenant acme's agent `ops`."""

import pytest
from nacl.signing import SigningKey

from tests.agents.channels.webhooks import BOT_TOKEN, SIGNING_SECRET
from tests.factories import ChannelBindingFactory


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
        bot_token="discord-bot-token",
    )
