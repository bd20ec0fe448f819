from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("exports", "0012_runs_of_a_table"),
    ]

    operations = [
        migrations.AddField(
            model_name="tablerun",
            name="rows_proof",
            field=models.CharField(
                blank=True,
                choices=[
                    ("sent", "the rows the one COPY reading the table reported sending"),
                    ("count", "a count(*) in the snapshot"),
                ],
                max_length=8,
            ),
        ),
    ]
