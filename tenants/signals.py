"""Signals of the tenants app, for the apps that serve tenants without tenants knowing them."""

from django.dispatch import Signal

# A new tenant exists (sent after its transaction committed). Arguments: `tenant`.
tenant_created = Signal()
