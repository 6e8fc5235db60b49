"""Pseudo-label confirmation bodies."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.fields import SafeStr
from app.schemas.mining import ItemBrief


class PseudoVerdictCreate(BaseModel):
    """Body of ``POST /projects/{pid}/pseudo-labels/{review_id}/verdict``."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["accept", "reject"]
    annotator: SafeStr = Field(min_length=1, max_length=200)
    label: str | None = Field(
        None, min_length=1, max_length=200, description="with reject: the right label (optional)"
    )


class PseudoReviewTask(BaseModel):
    """A pseudo-label to confirm: "is ``item`` a ``label``?"."""

    review_id: int
    checkpoint_id: int
    model_version: int
    method: str | None
    label: str
    labels: list[str]
    confidence: float | None
    question: str
    item: ItemBrief
    lease_expires_at: datetime


class PseudoReviewBatch(BaseModel):
    """``GET /projects/{pid}/pseudo-labels/verify/next``."""

    items: list[PseudoReviewTask]


class PseudoVerdictRead(BaseModel):
    """A recorded verdict on a pseudo-label."""

    review_id: int
    item_id: int
    checkpoint_id: int
    verdict: str
    annotator: str | None
    label: str
    corrected_label: str | None
    annotation_id: int | None
    decided_at: datetime | None


class CheckpointPrecision(BaseModel):
    """The confirmed precision of one checkpoint's pseudo-labels."""

    checkpoint_id: int
    version: int
    active: bool
    method: str | None
    n_pseudo: int
    routed: int
    queued: int
    accepted: int
    rejected: int
    precision: float | None
    precision_low: float | None
    precision_high: float | None


class PrecisionReport(BaseModel):
    """``GET /projects/{pid}/pseudo-labels/precision``."""

    checkpoints: list[CheckpointPrecision]
