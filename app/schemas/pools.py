"""Pool import and item bodies."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.fields import JsonDict, SafeStr
from app.schemas.indexing import NearDuplicate


class ItemIn(BaseModel):
    """One record of an import: exactly one of text / image / vector, per the modality."""

    model_config = ConfigDict(extra="forbid")

    external_id: SafeStr | None = Field(None, min_length=1, max_length=255)
    text: SafeStr | None = None
    image: SafeStr | None = Field(None, description="base64 PNG/JPEG, optionally a data: URL")
    vector: list[float] | None = None
    label: SafeStr | list[SafeStr] | None = Field(None, description="pre-label (stored as imported)")
    meta: JsonDict | None = None


class ImportAccepted(BaseModel):
    """Result of an import: done inline (201) or queued as a job (202)."""

    status: Literal["imported", "queued"]
    imported: int
    labeled: int
    pool_size: int
    job_id: int | None = None
    near_duplicates: list[NearDuplicate] = Field(
        default_factory=list,
        description="Imported rows that nearly duplicate an item (flagged, not rejected).",
    )


class AnnotationRead(BaseModel):
    """One row of an item's annotation history."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    item_id: int
    labels: list[str]
    annotator: str | None
    source: str
    confidence: float | None
    method: str | None
    checkpoint_id: int | None
    lease_id: str | None
    created_at: datetime


class ItemRead(BaseModel):
    """An item of the pool with its current label."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    external_id: str
    position: int
    text: str | None
    image: str | None = None
    meta: dict[str, Any]
    status: str
    labels: list[str] | None
    label_source: str | None
    label_confidence: float | None
    created_at: datetime


class Prediction(BaseModel):
    """The active checkpoint's prediction for one item or input."""

    label: str
    confidence: float
    labels: list[str] | None = Field(None, description="multilabel: labels with p >= 0.5")
    probs: dict[str, float]


class ItemDetail(ItemRead):
    """An item with its annotation history, prediction and acquisition scores."""

    annotations: list[AnnotationRead]
    prediction: Prediction | None
    scores: dict[str, float] | None
    model_version: int | None


class ItemPage(BaseModel):
    """One cursor page of items."""

    items: list[ItemRead]
    next_cursor: str | None
