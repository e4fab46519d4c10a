# Takes over the shard map from the tenants app (tenants.0006 lets go of it). The table
# tenants_shardmap was created by tenants.0003 and keeps its name and rows: only Django's
# model state moves, and the admin's content type with its permissions.

import django.core.validators
from django.db import migrations, models


def move_content_type(apps, schema_editor) -> None:
    """Staff given permissions on the shard map keep them."""
    content_type = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if not content_type.objects.using(db).filter(app_label="fleet", model="shardmap").exists():
        content_type.objects.using(db).filter(app_label="tenants", model="shardmap").update(
            app_label="fleet"
        )


def restore_content_type(apps, schema_editor) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if not content_type.objects.using(db).filter(app_label="tenants", model="shardmap").exists():
        content_type.objects.using(db).filter(app_label="fleet", model="shardmap").update(
            app_label="tenants"
        )


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("tenants", "0005_tenant_max_concurrent_streams"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ShardMap",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("epoch", models.PositiveIntegerField(unique=True)),
                        (
                            "shard_count",
                            models.PositiveIntegerField(
                                validators=[django.core.validators.MinValueValidator(1)]
                            ),
                        ),
                        (
                            "pins",
                            models.JSONField(
                                blank=True, default=dict, help_text='{"tenant-slug": shard index}'
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("adding", "Adding"),
                                    ("active", "Active"),
                                    ("retired", "Retired"),
                                ],
                                default="adding",
                                max_length=16,
                            ),
                        ),
                        ("note", models.CharField(blank=True, max_length=200)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("activated_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={"db_table": "tenants_shardmap", "ordering": ["-epoch"]},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, restore_content_type),
    ]
