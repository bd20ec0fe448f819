"""What every ADU management command shares: the --as and --json options and clean failures."""

import json

from django.core import checks
from django.core.management.base import BaseCommand, CommandError

from accounts.users import NoActingUser, acting_user
from connections.models import ConnectionFailed


class AduCommand(BaseCommand):
    """A command that acts for a user and prints text for people or JSON for machines."""

    def add_arguments(self, parser):
        parser.add_argument("--as", dest="as_user", metavar="USERNAME", help="Act for this user.")
        parser.add_argument("--json", action="store_true", help="Print JSON for machines.")

    def get_check_kwargs(self, options):
        # Every system check but the URLs': checking them imports the portal's views and
        # its API (django-ninja and pydantic, 0.3 s of each command's start), which no
        # command uses; `manage.py check` and runserver still check them. The two checks
        # without tags (auth's middleware order, django-axes's settings) are about the
        # portal too: a list of tags leaves them out.
        return {"tags": sorted(checks.registry.registry.tags_available() - {checks.Tags.urls})}

    def execute(self, *args, **options):
        # One clear sentence and a non-zero exit for anything the user can fix.
        try:
            return super().execute(*args, **options)
        except (NoActingUser, ConnectionFailed) as error:
            raise CommandError(str(error)) from None

    def user(self, options):
        return acting_user(options.get("as_user"))

    def emit(self, options, data, text):
        """Print JSON or text; either may be a function, so only the one shown is built."""
        if options["json"]:
            data = data() if callable(data) else data
            self.stdout.write(json.dumps(data, indent=2, default=str))
        else:
            self.stdout.write(text() if callable(text) else text)


def human_bytes(value) -> str:
    if value is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
