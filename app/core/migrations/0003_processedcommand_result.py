"""Idempotency records keep the command's result (stream, version, position), not an HTTP body:
the API and the console shape their own answers from it. Records are kept for 24 hours, so the
few present are rewritten in place."""

from django.db import migrations, models


def results_from_responses(apps, schema_editor):
    ProcessedCommand = apps.get_model("core", "ProcessedCommand")
    for row in ProcessedCommand.objects.all():
        body = row.result
        stream = body.get("stream_id") or body.get("account_id") or body.get("transfer_id")
        row.result = {"stream_id": stream, "version": body.get("version", 1), "position": body["position"]}
        row.save(update_fields=["result"])


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_processedcommand"),
        ("api", "0002_processedcommand_to_core"),
    ]

    operations = [
        migrations.AlterModelTable(name="processedcommand", table=None),
        migrations.RenameField(model_name="processedcommand", old_name="response", new_name="result"),
        migrations.RemoveField(model_name="processedcommand", name="status_code"),
        migrations.AlterField(
            model_name="processedcommand",
            name="result",
            field=models.JSONField(help_text="the command's result: stream_id, version, position"),
        ),
        migrations.AlterField(
            model_name="processedcommand",
            name="fingerprint",
            field=models.CharField(help_text="SHA-256 of what the key was first sent with", max_length=64),
        ),
        migrations.RunPython(results_from_responses, migrations.RunPython.noop),
    ]
