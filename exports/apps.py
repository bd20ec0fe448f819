from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"

    def ready(self):
        from django_q.signals import post_spawn

        post_spawn.connect(load_the_engine, dispatch_uid="adu-load-the-engine")


def load_the_engine(sender, proc_name, **kwargs):
    """A task cluster's worker loads the export engine (pyarrow, polars, pandera: about half
    a second) as it starts, not while a job's first tables wait for it. The commands and
    the portal never load it before an export runs (tests/test_startup.py)."""
    import exports.engine.run  # noqa: F401
