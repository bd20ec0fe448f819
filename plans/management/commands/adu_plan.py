"""Export plans from the command line: add, list, run, pause, resume, remove."""

import secrets

from django.core.management.base import CommandError
from django.utils import timezone

from accounts import roles
from adu_site.commands import AduCommand
from connections.models import Connection
from exports import cli
from exports.jobs import BadRequest
from plans.models import DEFAULT_PATTERN, ExportPlan, Notification, PlanRefused


class Command(AduCommand):
    help = (
        "Export plans: a saved export run on a schedule (cron or interval, in a time zone) by "
        "the task cluster, or by hand. A plan never overlaps itself: a run due while its last "
        "job is at work is skipped and recorded. `add NAME --connection C --cron '0 2 * * *'` "
        "takes adu_export's options for what to export, --incremental S.T (or '*') for tables "
        "exported by the changes since the plan's last export, and --email/--webhook for "
        "notifications. `list`, `run NAME` (now, on the cluster), `pause NAME`, `resume NAME`, "
        "`remove NAME`, `history NAME`."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add = actions.add_parser("add", help="Save a new plan.")
        add.add_argument("plan", help="The plan's name.")
        add.add_argument("--connection", required=True, help="The connection's name.")
        add.add_argument("--cron", default="", help="When, as cron: '0 2 * * *' is 02:00 daily.")
        add.add_argument("--every", type=int, metavar="MINUTES", help="Or every so many minutes.")
        add.add_argument("--timezone", default="UTC", help="The cron's time zone (default UTC).")
        add.add_argument(
            "--folder-pattern", default=DEFAULT_PATTERN,
            help="Each run's folder: text with {plan}, {date}, {time} and {run}.",
        )  # fmt: skip
        add.add_argument(
            "--incremental", action="append", default=[], metavar="S.T",
            help="Export this table (or '*': every table) by its changes since the last run.",
        )  # fmt: skip
        add.add_argument(
            "--watermark", action="append", default=[], metavar="S.T:COLUMN[:LAG]",
            help="Export this table by a column that only grows (an id, a timestamp): the rows "
            "above its last export's end, up to its highest value less LAG (default 0; a "
            "duration such as '5 minutes' for timestamps).",
        )  # fmt: skip
        add.add_argument("--email", action="append", default=[], help="Notify this address.")
        add.add_argument("--webhook", action="append", default=[], metavar="URL", help="POST here.")
        add.add_argument(
            "--notify-on", choices=Notification.When.values, default=Notification.When.PROBLEMS,
            help="failure, problems (errors or warnings too, the default) or always.",
        )  # fmt: skip
        add.add_argument("--paused", action="store_true", help="Save it paused.")
        cli.add_selection_arguments(add)
        for name, text in [
            ("list", "The plans, with their next run."),
            ("run", "Run the plan now, on the cluster."),
            ("pause", "Stop its scheduled runs."),
            ("resume", "Start its scheduled runs again."),
            ("remove", "Remove the plan (its jobs stay)."),
            ("history", "The plan's runs, newest first."),
        ]:
            sub = actions.add_parser(name, help=text)
            if name != "list":
                sub.add_argument("plan", help="The plan's name.")
        for sub in actions.choices.values():
            AduCommand.add_arguments(self, sub)

    def handle(self, *args, **options):
        user = self.user(options)
        action = options["action"]
        if action == "add":
            return self._add(user, options)
        if action == "list":
            plans = list(ExportPlan.objects.visible_to(user).select_related("connection"))
            return self.emit(options, [plan_data(p) for p in plans], lambda: plan_table(plans))
        plan = ExportPlan.objects.visible_to(user).filter(name=options["plan"]).first()
        if plan is None:
            raise CommandError(f"There is no plan named '{options['plan']}'; see adu_plan list.")
        if action == "history":
            runs = list(plan.runs.select_related("job")[:50])
            return self.emit(
                options,
                [run_data(r) for r in runs],
                lambda: "\n".join(run_line(r) for r in runs) or "No runs yet.",
            )
        if not roles.is_operator(user):
            raise CommandError("Your role cannot change or run plans.")
        if action == "run":
            from plans import runs

            run = runs.run_plan(plan, trigger="manual", by=user)
            return self.emit(options, run_data(run), run_line(run))
        if action in ("pause", "resume"):
            plan.set_paused(action == "pause", by=user)
            return self.emit(options, plan_data(plan), f"Plan {plan.name}: {plan_state(plan)}.")
        plan.remove(by=user)
        self.emit(
            options, {"removed": plan.name}, f"Removed plan {options['plan']}; its jobs stay."
        )

    def _add(self, user, options):
        if not roles.is_operator(user):
            raise CommandError("Your role cannot save plans.")
        connection = Connection.objects.usable_by(user).named(user, options["connection"])
        try:
            definition = cli.definition(options)
        except BadRequest as error:
            raise CommandError(str(error)) from None
        watermarks = {}
        for text in options["watermark"]:
            name, _, rest = text.partition(":")
            column, _, lag = rest.partition(":")
            watermarks[name.strip()] = {"column": column.strip(), "lag": lag.strip() or "0"}
        webhooks = [(url, secrets.token_urlsafe(32)) for url in options["webhook"]]
        try:
            plan = ExportPlan.create(
                name=options["plan"],
                owner=user,
                connection=connection,
                definition=definition,
                incremental=options["incremental"],
                watermarks=watermarks,
                folder_pattern=options["folder_pattern"],
                cron=options["cron"],
                every_minutes=options["every"],
                timezone=options["timezone"],
                paused=options["paused"],
                notify=[("email", a, "") for a in options["email"]]
                + [("webhook", url, secret) for url, secret in webhooks],
                notify_on=options["notify_on"],
            )
        except PlanRefused as error:
            raise CommandError(str(error)) from None
        text = f"Saved plan {plan.name}: {plan.schedule_text}, {plan_state(plan)}."
        for url, secret in webhooks:
            text += (
                f"\nWebhook {url}: its signing secret, shown only now: {secret}"
                "\n  (each POST carries X-ADU-Signature: sha256=HMAC-SHA-256 of the body with it)"
            )
        self.emit(options, {**plan_data(plan), "webhook_secrets": dict(webhooks)}, text)


def plan_state(plan: ExportPlan) -> str:
    if plan.paused:
        return "paused"
    local = timezone.localtime(plan.next_run_at, plan.zone) if plan.next_run_at else None
    return f"next run {local:%Y-%m-%d %H:%M %Z}" if local else "no run due"


def plan_data(plan: ExportPlan) -> dict:
    return {
        "id": plan.pk,
        "name": plan.name,
        "connection": plan.connection.name,
        "cron": plan.cron or None,
        "every_minutes": plan.every_minutes,
        "timezone": plan.timezone,
        "paused": plan.paused,
        "next_run_at": plan.next_run_at,
        "incremental": plan.incremental,
        "watermarks": plan.watermarks,
        "folder_pattern": plan.folder_pattern,
        "definition": plan.definition,
    }


def plan_table(plans: list[ExportPlan]) -> str:
    if not plans:
        return "No plans yet: adu_plan add NAME --connection C --cron '0 2 * * *'."
    return "\n".join(
        f"{p.name:24} {p.connection.name:16} {p.schedule_text:32} {plan_state(p)}" for p in plans
    )


def run_data(run) -> dict:
    return {
        "at": run.at,
        "trigger": run.trigger,
        "outcome": run.outcome,
        "job_id": run.job_id,
        "note": run.note,
    }


def run_line(run) -> str:
    job = f"job {run.job_id}" if run.job_id else "no job"
    note = f": {run.note}" if run.note else ""
    return f"{run.at:%Y-%m-%d %H:%M} {run.trigger:9} {run.outcome:8} {job}{note}"
