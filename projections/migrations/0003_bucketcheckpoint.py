"""The checkpoint row model is called BucketCheckpoint (apart from eventstore.records.Checkpoint);
its table keeps its name, so this changes no SQL: the table name is set first, then the model renamed."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("projections", "0002_rebuild")]

    operations = [
        migrations.AlterModelTable(name="checkpoint", table="projections_checkpoint"),
        migrations.RenameModel(old_name="Checkpoint", new_name="BucketCheckpoint"),
    ]
