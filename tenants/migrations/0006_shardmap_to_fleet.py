# The shard map belongs to the fleet app now (fleet.0001_initial takes it over). Only
# Django's model state changes: the table tenants_shardmap and its rows stay as they are.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0005_tenant_max_concurrent_streams"),
        ("fleet", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ShardMap")],
            database_operations=[],
        ),
    ]
