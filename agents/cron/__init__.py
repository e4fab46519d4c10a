"""Cron jobs: messages sent to an agent on a schedule, and the history of their runs.

The CronJob row is the truth and django-celery-beat's PeriodicTask its mirror, rewritten
in the same transaction on every create, change, pause and delete (`beat`). Beat's
DatabaseScheduler reloads its table when `PeriodicTasks` says it changed, and sends
`agents.fire_cron_job` to the tenant's queue; a run sends the message through
`submit_message` like any other client (`services`). A job with a `delivery` has each
run's answer posted to a Slack or Discord channel by the channel code
(agents.channels.delivery). `schedules` checks and computes schedules; `selectors` reads
jobs and runs.
"""
