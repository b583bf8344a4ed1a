from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list = []  # noqa: RUF012 - the shape Django generates

    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("text", models.CharField(max_length=100)),
            ],
        ),
    ]
