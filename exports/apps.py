from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"

    def ready(self):
        from django_q.signals import post_spawn

        post_spawn.connect(load_the_engine, dispatch_uid="adu-load-the-engine")


def load_the_engine(sender, proc_name, **kwargs):
    """A task cluster's worker loads the export engine (pyarrow, polars, pandera: about half
    a second) and the sources' drivers (60 ms more) as it starts, not while a job's first
    tables wait for them. The commands and the portal never load them before an export
    runs (tests/test_startup.py)."""
    import connections.drivers.postgresql  # noqa: F401
    import connections.drivers.vertica  # noqa: F401
    import exports.engine.run  # noqa: F401
