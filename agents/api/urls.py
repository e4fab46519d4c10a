from django.urls import path

from . import cron_views, views

urlpatterns = [
    path("agents", views.AgentListView.as_view(), name="agent-list"),
    path("agents/<slug:slug>", views.AgentDetailView.as_view(), name="agent-detail"),
    path("providers", views.ProviderCredentialListView.as_view(), name="provider-list"),
    path("providers/<str:provider>", views.ProviderCredentialView.as_view(), name="provider"),
    path("sessions", views.SessionListView.as_view(), name="session-list"),
    path("sessions/<session_key:key>", views.SessionDetailView.as_view(), name="session-detail"),
    path(
        "sessions/<session_key:key>/reset", views.SessionResetView.as_view(), name="session-reset"
    ),
    path(
        "sessions/<session_key:key>/messages",
        views.SessionMessagesView.as_view(),
        name="session-messages",
    ),
    path(
        "sessions/<session_key:key>/events",
        views.SessionEventsView.as_view(),
        name="session-events",
    ),
    path("turns/<id:turn_id>", views.TurnDetailView.as_view(), name="turn-detail"),
    path("turns/<id:turn_id>/cancel", views.TurnCancelView.as_view(), name="turn-cancel"),
    path("turns/<id:turn_id>/events", views.TurnEventsView.as_view(), name="turn-events"),
    path("cron-jobs", cron_views.CronJobListView.as_view(), name="cron-job-list"),
    path("cron-jobs/<id:job_id>", cron_views.CronJobDetailView.as_view(), name="cron-job-detail"),
    path("cron-jobs/<id:job_id>/run", cron_views.CronJobRunView.as_view(), name="cron-job-run"),
    path("cron-jobs/<id:job_id>/runs", cron_views.CronJobRunsView.as_view(), name="cron-job-runs"),
]
