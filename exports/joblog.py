"""Per-job log files: every line about a job (or a load) goes to its own file (log_path)
and the console."""

import logging
import os
from pathlib import Path

from django.conf import settings

_logger = logging.getLogger("adu.job")


class _JobAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        subject, table = self.extra["subject"], self.extra["table"]
        where = subject + (f" {table}" if table else "")
        kwargs.setdefault("extra", {}).update(self.extra)
        return f"{where}: {msg}", kwargs


def job_log(job, table=None) -> logging.LoggerAdapter:
    """A logger whose lines name the job (or load, and table) and also land in its own file."""
    kind = job._meta.model_name.removeprefix("export")  # "job" or "load"
    return _JobAdapter(
        _logger,
        {
            "subject": f"{kind} {job.pk}",
            "job_log_path": str(log_path(job)),
            "table": str(table) if table else "",
        },
    )


def log_path(job) -> Path:
    """The job's (or load's) own log file, for writers and readers alike. Its log token is
    in the name: ids start again at 1 in a new database (or the test suite's), and a job
    must never append to, show or delete the log an earlier job with its id left behind."""
    kind = job._meta.model_name.removeprefix("export")
    return Path(settings.JOB_LOG_DIR) / f"{kind}-{job.pk}-{job.log_token}.log"


class JobFileHandler(logging.Handler):
    """Appends each record that carries a job's log path (see job_log) to that file.

    Files are opened per line in append mode, so workers in several processes can write
    to one job's log without a lock.
    """

    def emit(self, record):
        path = getattr(record, "job_log_path", None)
        if path is None:
            return
        try:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            line = self.format(record) + "\n"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except Exception:
            self.handleError(record)
