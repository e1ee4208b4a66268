from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0001_initial")]
    operations = [
        migrations.RunSQL(
            """
            CREATE TABLE eventstore_subject_key (
                subject_id uuid PRIMARY KEY,
                wrapped_key bytea,
                created_at timestamptz NOT NULL DEFAULT now(),
                forgotten_at timestamptz
            );
            """,
            reverse_sql="DROP TABLE eventstore_subject_key",
        )
    ]
