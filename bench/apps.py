from django.apps import AppConfig


class BenchConfig(AppConfig):
    """`manage.py bench`: the benchmark sits on top of every app and is imported by none."""

    name = "bench"
