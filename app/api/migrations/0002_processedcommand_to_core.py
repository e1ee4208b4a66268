"""ProcessedCommand now belongs to app.core (state only: the table is core's now)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
        ("core", "0002_processedcommand"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="ProcessedCommand")]),
    ]
