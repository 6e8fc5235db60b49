"""Training, job, model and prediction bodies."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.ids import DbId
from app.schemas.mining import TrainNegatives

SemiSupervisedMethod = Literal[
    "none", "self_training", "fixmatch", "flexmatch", "freematch", "mean_teacher",
    "label_spreading",
]


class SemiSupervised(BaseModel):
    """Semi-supervised settings of a training run (see ``app.ml.semi_supervised``)."""

    model_config = ConfigDict(extra="forbid")

    method: SemiSupervisedMethod = "self_training"
    threshold: float = Field(
        0.95, gt=0.0, le=1.0,
        description="pseudo-label confidence threshold (FixMatch/FlexMatch tau; self-training)",
    )
    max_per_class: int | None = Field(None, ge=1)
    rounds: int = Field(1, ge=1, le=10, description="self-training rounds")
    weight: float | None = Field(
        None, gt=0.0, le=100.0,
        description="weight of the unlabeled loss; default 0.5 for self-training, 1 for the "
        "threshold methods, 50 for mean_teacher",
    )
    distribution_alignment: bool = Field(
        False, description="ReMixMatch distribution alignment (fixmatch/flexmatch/freematch)"
    )
    steps: int | None = Field(
        None, ge=10, le=200_000, description="optimizer steps of a consistency method (2000)"
    )
    image_flip: bool = Field(
        False, description="image views may mirror left-right (only if mirroring keeps labels)"
    )

    @model_validator(mode="after")
    def _weight_fits_method(self) -> "SemiSupervised":
        if self.method == "self_training" and self.weight is not None and self.weight > 1.0:
            raise ValueError("weight of self-training pseudo-labels must be <= 1")
        return self


class TrainRequest(BaseModel):
    """Body of ``POST /projects/{pid}/train``."""

    model_config = ConfigDict(extra="forbid")

    semi_supervised: SemiSupervised | None = Field(default_factory=SemiSupervised)
    epochs: int | None = Field(None, ge=1, le=10_000)
    hidden: int | None = Field(None, ge=0, le=8192, description="0 = linear head")
    architecture: Literal["auto", "mlp", "cnn"] = Field(
        "auto", description="auto: the small CNN for image projects, the MLP head otherwise"
    )
    early_stopping: bool = Field(True, description="early stopping on the hold-out loss")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    activate: Literal["if_better", "always", "never"] = Field(
        "if_better",
        description="if_better: activate unless its hold-out macro-F1 is below the active "
        "checkpoint's on the same split; always; never (kept, activate it by hand)",
    )
    confirm_share: float | None = Field(
        None, ge=0.0, le=1.0, description="share of the new pseudo-labels sent to annotators"
    )
    negatives: TrainNegatives = Field(
        default_factory=TrainNegatives,
        description="confirmed mined negatives and PU negatives (positive-only projects)",
    )


class JobRead(BaseModel):
    """A background job."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    kind: str
    status: str
    progress: float
    message: str | None
    params: dict[str, Any]
    metrics: dict[str, Any] = Field(validation_alias="result")
    error: str | None
    epoch_metrics: list[dict[str, Any]] = Field(
        default_factory=list, description="per-epoch {stage, epoch, n_epochs, loss, progress, t}"
    )
    log_tail: str | None = Field(None, description="the last progress lines, newest last")
    cancel_requested: bool = False
    worker: str | None = Field(None, description="host:pid of the process running the job")
    heartbeat_at: datetime | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CheckpointRead(BaseModel):
    """A trained model version."""

    id: int
    version: int
    active: bool
    metrics: dict[str, Any]
    label_counts: dict[str, Any]
    n_labeled: int
    n_pseudo: int
    job_id: int | None
    created_at: datetime
    activation: dict[str, Any] | None = Field(
        None, description="whether and why the training job activated this checkpoint"
    )
    pseudo_confirmation: dict[str, Any] = Field(
        default_factory=dict,
        description="annotators' verdicts on its pseudo-labels: routed, queued, accepted, "
        "rejected, precision (95% Wilson interval in precision_low/high)",
    )


class PredictRequest(BaseModel):
    """Body of ``POST /projects/{pid}/predict``: exactly one input kind."""

    model_config = ConfigDict(extra="forbid")

    item_ids: list[DbId] | None = Field(None, max_length=10_000)
    texts: list[str] | None = Field(None, max_length=1_000)
    vectors: list[list[float]] | None = Field(None, max_length=10_000)

    @model_validator(mode="after")
    def _one_of(self) -> "PredictRequest":
        given = [x for x in (self.item_ids, self.texts, self.vectors) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of item_ids, texts or vectors")
        return self


class PredictionRead(BaseModel):
    """One prediction."""

    item_id: int | None = None
    label: str
    confidence: float
    labels: list[str] | None = None
    probs: dict[str, float]


class PredictResponse(BaseModel):
    """Predictions of the active checkpoint."""

    model_version: int
    predictions: list[PredictionRead]
