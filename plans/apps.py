from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = "Export plans"

    def ready(self):
        from exports.signals import job_finished
        from plans import notify

        job_finished.connect(notify.on_job_finished, dispatch_uid="plans-notify")
