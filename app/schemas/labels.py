"""Annotation, queue and batch-query bodies."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.fields import JsonDict, SafeStr
from app.schemas.ids import DbId
from app.schemas.pools import ItemRead


class AnnotationCreate(BaseModel):
    """Body of ``POST /projects/{pid}/annotations``: ``label`` or ``labels``."""

    model_config = ConfigDict(extra="forbid")

    item_id: DbId
    label: SafeStr | None = None
    labels: list[SafeStr] | None = None
    annotator: SafeStr | None = Field(None, max_length=200)
    lease_id: str | None = Field(None, max_length=32)
    replace: bool = Field(
        False, description="allow replacing a different human label (else 409 label_conflict)"
    )

    @model_validator(mode="after")
    def _one_of(self) -> "AnnotationCreate":
        if (self.label is None) == (self.labels is None):
            raise ValueError("give exactly one of label or labels")
        return self

    def label_list(self) -> list[str]:
        """The labels as a list."""
        return [self.label] if self.label is not None else list(self.labels or [])


class Acquisition(BaseModel):
    """Why the queue served an item."""

    strategy: str
    score: float | None
    rank: int
    checkpoint_id: int | None
    model_version: int | None
    seed: int | None


class Suggestion(BaseModel):
    """The active model's guess for an item."""

    label: str
    confidence: float


class NextItem(BaseModel):
    """An item served by ``/next`` under a lease."""

    lease_id: str
    expires_at: datetime
    item: ItemRead
    acquisition: Acquisition
    suggestion: Suggestion | None


class NextResponse(BaseModel):
    """Items leased to one annotator."""

    items: list[NextItem]


class LeaseRead(BaseModel):
    """A lease record."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    item_id: int
    annotator: str
    strategy: str
    score: float | None
    rank: int
    checkpoint_id: int | None
    seed: int | None
    status: str
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None


class QueryCreate(BaseModel):
    """Body of ``POST /projects/{pid}/queries``."""

    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(min_length=1, max_length=64)
    batch_size: int = Field(10, ge=1, le=10_000)
    params: JsonDict = Field(default_factory=dict)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)


class QueryItemRead(BaseModel):
    """One selected item."""

    item_id: int
    rank: int
    score: float | None


class QueryRead(BaseModel):
    """A stored batch query."""

    id: int
    strategy: str
    params: dict[str, Any]
    seed: int | None
    model_version: int | None
    checkpoint_id: int | None
    info: dict[str, Any]
    items: list[QueryItemRead]
    created_at: datetime
