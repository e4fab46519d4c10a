"""The channels' HTTP side: the Slack and Discord webhook views and their URLs."""
