"""Project request/response bodies."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.schemas.fields import JsonDict, SafeStr
from app.schemas.jobs import TrainRequest

Task = Literal["binary", "multiclass", "multilabel"]
Modality = Literal["text", "image", "vector"]


def _check_labels(labels: list[str]) -> list[str]:
    cleaned = [label.strip() for label in labels]
    if any(not label for label in cleaned):
        raise ValueError("labels must be non-empty strings")
    if len(set(cleaned)) != len(cleaned):
        raise ValueError("labels must be unique")
    return cleaned


class ProjectCreate(BaseModel):
    """Body of ``POST /projects``."""

    model_config = ConfigDict(extra="forbid")

    name: SafeStr = Field(min_length=1, max_length=200)
    task: Task = "multiclass"
    labels: list[SafeStr] = Field(min_length=1, max_length=10_000)
    modality: Modality = "text"
    embedder: str | None = Field(None, description="minilm, pixels or vector; default by modality")
    queue_strategy: str | None = Field(None, description="strategy /next uses; default margin")

    _labels = field_validator("labels")(_check_labels)

    @model_validator(mode="after")
    def _task_fits_labels(self) -> "ProjectCreate":
        if self.task == "binary" and len(self.labels) != 2:
            raise ValueError("a binary project has exactly 2 labels")
        if self.task == "multiclass" and len(self.labels) < 2:
            raise ValueError("a multiclass project has at least 2 labels")
        return self


class ProjectUpdate(BaseModel):
    """Body of ``PATCH /projects/{pid}``; labels may only be appended."""

    model_config = ConfigDict(extra="forbid")

    name: SafeStr | None = Field(None, min_length=1, max_length=200)
    labels: list[SafeStr] | None = Field(None, min_length=1, max_length=10_000)
    queue_strategy: str | None = None
    train_defaults: JsonDict | None = Field(
        None,
        description="default body of POST /train for this project (any subset of its fields; "
        "a run's own fields win); {} clears it",
    )

    _labels = field_validator("labels")(lambda v: v if v is None else _check_labels(v))

    @field_validator("train_defaults")
    @classmethod
    def _valid_train_body(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        TrainRequest.model_validate(value)  # same rules as a run's body; errors name the field
        return value


class ModelSummary(BaseModel):
    """The active checkpoint in a project read."""

    checkpoint_id: int
    version: int
    metrics: dict[str, Any]
    n_labeled: int
    n_pseudo: int
    created_at: datetime


class ProjectCounts(BaseModel):
    """Pool counts of a project."""

    items: int
    labeled: int
    pseudo_labeled: int
    unlabeled: int
    by_label: dict[str, int]


class ProjectRead(BaseModel):
    """A project with its counts and active model."""

    id: int
    name: str
    task: Task
    labels: list[str]
    modality: Modality
    embedder: str
    feature_dim: int | None
    queue_strategy: str
    train_defaults: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    counts: ProjectCounts
    active_model: ModelSummary | None
