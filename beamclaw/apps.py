from django.apps import AppConfig


class BeamclawConfig(AppConfig):
    name = "beamclaw"
