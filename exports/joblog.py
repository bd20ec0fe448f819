"""Per-job log files: every line about a job goes to var/logs/jobs/job-<id>.log and the console."""

import logging
import os
from pathlib import Path

from django.conf import settings

_logger = logging.getLogger("adu.job")


class _JobAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        job_id, table = self.extra["job_id"], self.extra["table"]
        where = f"job {job_id}" + (f" {table}" if table else "")
        kwargs.setdefault("extra", {}).update(self.extra)
        return f"{where}: {msg}", kwargs


def job_log(job_id: int, table=None) -> logging.LoggerAdapter:
    """A logger whose lines name the job (and table) and also land in the job's own file."""
    return _JobAdapter(_logger, {"job_id": job_id, "table": str(table) if table else ""})


def log_path(job_id: int) -> Path:
    return Path(settings.JOB_LOG_DIR) / f"job-{job_id}.log"


class JobFileHandler(logging.Handler):
    """Appends each record that carries a job id to that job's file.

    Files are opened per line in append mode, so workers in several processes can write
    to one job's log without a lock.
    """

    def emit(self, record):
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            return
        try:
            path = log_path(job_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            line = self.format(record) + "\n"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except Exception:
            self.handleError(record)
