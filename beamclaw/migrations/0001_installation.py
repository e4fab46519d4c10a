from django.db import migrations, models


def create_installation(apps, schema_editor):
    from beamclaw.installation import new_installation_key

    Installation = apps.get_model("beamclaw", "Installation")
    Installation.objects.get_or_create(pk=1, defaults={"key": new_installation_key()})


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Installation",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(
                        default=1, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("key", models.CharField(editable=False, max_length=32, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(condition=models.Q(id=1), name="one_installation")
                ],
            },
        ),
        migrations.RunPython(create_installation, migrations.RunPython.noop),
    ]
