"""The admin's login form, refusing a while after too many wrong passwords
(beamclaw.login_throttle); `BeamclawConfig.ready` puts it on the admin site."""

from __future__ import annotations

import math

from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from beamclaw import login_throttle


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "too_many_failed_logins": "Too many failed logins from this address or for this "
        "user. Try again in %(minutes)s minute(s).",
    }

    def clean(self):
        username = self.cleaned_data.get("username")
        if username is None or not self.cleaned_data.get("password"):
            return super().clean()  # no password tried: the form says what is missing
        try:
            login_throttle.start_attempt(self.request, username)
        except login_throttle.LoginLocked as locked:
            raise ValidationError(
                self.error_messages["too_many_failed_logins"],
                code="too_many_failed_logins",
                params={"minutes": math.ceil(locked.retry_after / 60)},
            )
        # A wrong password, an unknown user or one who is not staff raises and stays counted.
        cleaned = super().clean()
        login_throttle.forget_attempt(self.request, username)
        return cleaned
