"""The three roles as groups. ADU Admin's permissions are granted after each migrate
(accounts.apps), because Django creates model permissions only then."""

from django.db import migrations

ROLES = ("ADU Admin", "ADU Operator", "ADU Viewer")


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_roles, remove_roles)]
