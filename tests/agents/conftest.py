"""Fixtures shared by the agent tests: the fake chat API, emptied for each test."""

import pytest

from testing.fake_chat import FakeChannelApi


@pytest.fixture
def channel_api(channel_api_server, settings) -> FakeChannelApi:
    """The session's fake Slack/Discord API, emptied; this process posts to it too."""
    channel_api_server.reset()
    settings.SLACK_API_BASE_URL = channel_api_server.slack_url
    settings.DISCORD_API_BASE_URL = channel_api_server.discord_url
    return channel_api_server
