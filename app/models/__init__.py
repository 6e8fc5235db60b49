"""SQLAlchemy ORM tables (and nothing else); ``Base.metadata`` is Alembic's target."""

from app.models.auth import ApiKey, ProjectMember, UiSession, User
from app.models.base import Base
from app.models.checkpoint import Checkpoint
from app.models.job import Job, JobStatus
from app.models.label import Annotation, LabelSource
from app.models.mining import MiningRun, NegativeTriplet, VerifyStatus
from app.models.pool import Item, ItemStatus, Lease, LeaseStatus
from app.models.project import Project
from app.models.pseudo_review import PseudoLabelReview, ReviewStatus
from app.models.query import QueryBatch, QueryItem
from app.models.queue_ranking import QueueRanking
from app.models.schedule import TrainingSchedule
from app.models.webhook import DeliveryStatus, WebhookDelivery, WebhookSubscription

__all__ = [
    "Annotation",
    "ApiKey",
    "Base",
    "Checkpoint",
    "DeliveryStatus",
    "Item",
    "ItemStatus",
    "Job",
    "JobStatus",
    "LabelSource",
    "Lease",
    "LeaseStatus",
    "MiningRun",
    "NegativeTriplet",
    "Project",
    "ProjectMember",
    "PseudoLabelReview",
    "QueryBatch",
    "QueryItem",
    "QueueRanking",
    "ReviewStatus",
    "TrainingSchedule",
    "UiSession",
    "User",
    "VerifyStatus",
    "WebhookDelivery",
    "WebhookSubscription",
]
