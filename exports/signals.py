"""What other apps may hear of a job without the engine knowing them."""

from django.dispatch import Signal

# Sent by exports.engine.run.finish_job once a job has ended and its manifest is written:
# sender=ExportJob, job=the job (its status final).
job_finished = Signal()
