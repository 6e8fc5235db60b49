"""The job bodies by kind, as runners dispatch them."""

from app.jobs.imports import run_import
from app.jobs.retrain import run_train
from app.jobs.runner import JobBodies

JOB_BODIES: JobBodies = {"import": run_import, "train": run_train}
