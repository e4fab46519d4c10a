"""Webhook URLs, mounted under /hooks/ (see agents.channels.api.views)."""

from django.urls import path

from . import views

urlpatterns = [
    path("slack/<id:binding_id>/events", views.slack_events, name="slack-events"),
    path(
        "discord/<id:binding_id>/interactions",
        views.discord_interactions,
        name="discord-interactions",
    ),
]
