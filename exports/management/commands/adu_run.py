"""Run ADU on one machine: the web portal and the task cluster together, with the demo source."""

import signal
import subprocess
import sys
import time

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from accounts.users import ensure_admin
from connections.demo import DEMO_PORT, start_demo
from connections.localpg import LocalPostgresError


class Command(BaseCommand):
    help = (
        "Starts the web portal and the Django-Q2 task cluster together (Ctrl-C stops both), "
        "after creating the first admin user (its password is printed once, or taken from "
        "ADU_ADMIN_PASSWORD) and starting the demo PostgreSQL under var/ registered as the "
        "connection 'Demo PostgreSQL'. Run `migrate` first."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1", help="Address to listen on.")
        parser.add_argument("--port", type=int, default=8000, help="Port of the portal.")
        parser.add_argument(
            "--demo-port", type=int, default=DEMO_PORT, help="Port of the demo PostgreSQL."
        )
        parser.add_argument("--no-demo", action="store_true", help="Do not start the demo.")

    def handle(self, *args, **options):
        call_command("collectstatic", interactive=False, verbosity=0)
        created, password = ensure_admin()
        # Shown now, before anything else can fail: it is shown only once.
        if password:
            self.stdout.write(f"Log in as 'admin' with password: {password}  (shown only once)")
        elif created:
            self.stdout.write("Log in as 'admin' with the password in ADU_ADMIN_PASSWORD.")
        demo = None
        if not options["no_demo"]:
            admin = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
            try:
                demo, connection = start_demo(admin, port=options["demo_port"])
            except LocalPostgresError as error:
                raise CommandError(
                    f"The demo PostgreSQL did not start: {error} (`manage.py adu_run "
                    "--demo-port N` picks another port; --no-demo skips it)"
                ) from None
            self.stdout.write(
                f"Demo PostgreSQL on 127.0.0.1:{demo.port}, connection '{connection.name}'."
            )
        manage = [sys.executable, "manage.py"]
        address = f"{options['addr']}:{options['port']}"
        children = [
            subprocess.Popen([*manage, "runserver", address, "--noreload"]),
            subprocess.Popen([*manage, "qcluster"]),
        ]
        self.stdout.write(self.style.SUCCESS(f"ADU is running at http://{address}/"))
        if not created:
            self.stdout.write("Log in with your admin account.")
        self.stdout.write("Press Ctrl-C to stop.")
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            self.stderr.write("A part of ADU stopped on its own; stopping the rest.")
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            for child in children:
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
            if demo:
                demo.stop()
            self.stdout.write("ADU stopped.")


def _interrupt(signum, frame):
    # SIGTERM (a service manager, `kill`) stops everything the same way Ctrl-C does.
    raise KeyboardInterrupt
