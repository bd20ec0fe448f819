"""Connections, saved queries and sensitive-column policies as they are at the first release.

Squashed from 0001_initial to 0005_labels before the first release: a database that had
all five applied takes this one as applied (`replaces`).
"""

import connections.crypto
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ("connections", "0001_initial"),
        ("connections", "0002_sharing"),
        ("connections", "0003_ca_certificate"),
        ("connections", "0004_sensitivecolumn_savedquery"),
        ("connections", "0005_labels"),
    ]

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Connection',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100)),
                ('kind', models.CharField(choices=[('postgresql', 'PostgreSQL'), ('greenplum', 'Greenplum'), ('vertica', 'Vertica')], default='postgresql', max_length=20)),
                ('host', models.CharField(max_length=255)),
                ('port', models.PositiveIntegerField(default=5432)),
                ('database', models.CharField(max_length=255)),
                ('username', models.CharField(max_length=255)),
                ('password', connections.crypto.EncryptedTextField(blank=True)),
                ('sslmode', models.CharField(choices=[('disable', 'disable (no SSL)'), ('allow', 'allow (SSL only if the server requires it)'), ('prefer', 'prefer (SSL if the server offers it)'), ('require', 'require (SSL; certificate not checked)'), ('verify-ca', 'verify-ca (SSL; Verify CA: certificate signed by the CA)'), ('verify-full', 'verify-full (SSL; Verify CA and the host name)')], default='prefer', max_length=20, verbose_name='SSL mode')),
                ('connect_timeout', models.PositiveIntegerField(default=10, help_text='How long to wait for the server to answer.', verbose_name='connect timeout (seconds)')),
                ('ca_certificate', connections.crypto.EncryptedTextField(blank=True)),
                ('options', models.JSONField(blank=True, default=dict, help_text='Extra driver options, e.g. application_name.')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('owner', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='connections', to=settings.AUTH_USER_MODEL)),
                ('shared_with', models.ManyToManyField(blank=True, help_text='Operators of these groups may export from it; viewers see its jobs.', related_name='shared_connections', to='auth.group')),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='SavedQuery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.SlugField(help_text='Letters, digits, - and _: the name of its Parquet file.', max_length=100)),
                ('sql', models.TextField(help_text='One SELECT; it runs read-only.', verbose_name='SQL')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('connection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='queries', to='connections.connection')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name_plural': 'saved queries',
                'ordering': ['connection', 'name'],
            },
        ),
        migrations.CreateModel(
            name='SensitiveColumn',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('pattern', models.CharField(max_length=300)),
                ('action', models.CharField(choices=[('exclude', 'Leave the column out'), ('null', 'Mask: keep the column, drop its values'), ('hash', 'Mask: keyed hash (joins still work)'), ('redact', 'Mask: a fixed string')], default='exclude', max_length=10)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('connection', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='sensitive_columns', to='connections.connection')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['connection', 'pattern'],
            },
        ),
        migrations.AddConstraint(
            model_name='connection',
            constraint=models.UniqueConstraint(fields=('owner', 'name'), name='connection_name_per_owner'),
        ),
        migrations.AddConstraint(
            model_name='savedquery',
            constraint=models.UniqueConstraint(fields=('connection', 'name'), name='one_query_name'),
        ),
    ]
