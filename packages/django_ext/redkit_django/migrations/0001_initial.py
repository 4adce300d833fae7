"""The outbox's table."""

from django.db import migrations, models


class Migration(migrations.Migration):  # type: ignore[misc]
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="OutboxJob",
            fields=[
                ("id", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("queue", models.CharField(max_length=200)),
                ("job", models.TextField()),
                ("created_ms", models.BigIntegerField(db_index=True)),
            ],
            options={"verbose_name": "outbox job", "db_table": "redkit_outbox"},
        ),
    ]
