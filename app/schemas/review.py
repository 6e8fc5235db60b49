"""Review bodies: current annotations with filters, explicit relabel, undo."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.fields import SafeStr
from app.schemas.pools import AnnotationRead, ItemRead

ReviewSource = Literal["human", "pseudo", "imported"]


class ReviewPrediction(BaseModel):
    """The active model's prediction for a reviewed item."""

    label: str
    labels: list[str] | None = Field(None, description="multilabel: labels with p >= 0.5")
    confidence: float


class ReviewRow(BaseModel):
    """An item's current annotation (the one that set its label) and the model's view."""

    annotation: AnnotationRead
    item: ItemRead
    prediction: ReviewPrediction | None
    disagrees: bool | None = Field(
        None, description="the model's prediction differs from the label (None: no prediction)"
    )


class ReviewPage(BaseModel):
    """One cursor page of current annotations, newest first."""

    rows: list[ReviewRow]
    next_cursor: str | None
    total: int = Field(description="rows matching the filters, over all pages")
    model_version: int | None


class RelabelCreate(BaseModel):
    """Body of ``POST /projects/{pid}/annotations/{aid}/relabel``: ``label`` or ``labels``."""

    model_config = ConfigDict(extra="forbid")

    label: SafeStr | None = None
    labels: list[SafeStr] | None = None
    annotator: SafeStr | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _one_of(self) -> "RelabelCreate":
        if (self.label is None) == (self.labels is None):
            raise ValueError("give exactly one of label or labels")
        return self


class UndoCreate(BaseModel):
    """Body of ``POST /projects/{pid}/annotations/{aid}/undo``."""

    model_config = ConfigDict(extra="forbid")

    annotator: SafeStr | None = Field(None, max_length=200, description="who gave the label")
    relet: bool = Field(True, description="lease the item back to the annotator")


class LeaseBrief(BaseModel):
    """A lease handed back by undo."""

    lease_id: str
    expires_at: datetime


class UndoRead(BaseModel):
    """What undo did: the retraction row, the undone annotation, the item now."""

    undone: AnnotationRead
    annotation: AnnotationRead
    item: ItemRead
    lease: LeaseBrief | None
