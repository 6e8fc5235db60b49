"""Hard-negative mining bodies."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.fields import SafeStr
from app.schemas.ids import DbId


class Anchors(BaseModel):
    """Which anchors to mine for: item ids, every item of a label, or raw texts."""

    model_config = ConfigDict(extra="forbid")

    item_ids: list[DbId] | None = Field(None, min_length=1, max_length=100_000)
    label: str | None = None
    texts: list[str] | None = Field(None, min_length=1, max_length=1_000)

    @model_validator(mode="after")
    def _one_of(self) -> "Anchors":
        given = [x for x in (self.item_ids, self.label, self.texts) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of item_ids, label or texts")
        return self


class MineRequest(BaseModel):
    """Body of ``POST /projects/{pid}/negatives/mine``."""

    model_config = ConfigDict(extra="forbid")

    anchors: Anchors
    k: int = Field(10, ge=1, le=1000)
    range_min: int = Field(0, ge=0, le=10_000)
    range_max: int | None = Field(None, ge=1, le=10_000)
    margin: float | None = Field(
        None, ge=-2.0, le=2.0, description="drop similarity > anchor-positive similarity - margin"
    )
    relative_margin: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="drop similarity > positive - |positive| * relative_margin",
    )
    max_similarity: float | None = Field(None, ge=-1.0, le=1.0)
    min_similarity: float | None = Field(None, ge=-1.0, le=1.0, description="similarity floor")
    sampling: Literal["top", "random", "semi-hard"] = "top"
    semi_hard_margin: float = Field(
        0.1,
        gt=0.0,
        le=2.0,
        description="semi-hard band: positive - semi_hard_margin <= similarity < positive",
    )
    max_predicted_probability: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="drop items the active model predicts as the anchor's label above this",
    )
    max_candidates: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="search at most this many nearest neighbours per anchor (raw ranks, as "
        "sentence-transformers' range_max); anchors that run out get fewer than k negatives",
    )
    exclude_same_label: bool = True
    positive_only: bool | None = Field(
        None,
        description="negatives only from unlabeled items (PU); default: on when only one label "
        "has labeled items",
    )
    output: Literal["triplet", "n-tuple"] = "triplet"
    enqueue: bool = Field(False, description="queue the negatives for verification")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _window(self) -> "MineRequest":
        if self.range_max is not None and self.range_max <= self.range_min:
            raise ValueError("range_max must be greater than range_min")
        return self


class Triplet(BaseModel):
    """One anchor / positive / negative with similarities."""

    anchor_id: int | None
    anchor_text: str | None = None
    positive_id: int | None
    negative_id: int
    rank: int
    anchor_negative_score: float
    anchor_positive_score: float | None


class NTuple(BaseModel):
    """One anchor with its positive and every mined negative, hardest first."""

    anchor_id: int | None
    anchor_text: str | None = None
    positive_id: int | None
    negative_ids: list[int]
    anchor_negative_scores: list[float]
    anchor_positive_score: float | None


class MineResponse(BaseModel):
    """Mined triplets (and n-tuples) and how many candidates each filter dropped."""

    run_id: int
    n_anchors: int
    triplets: list[Triplet]
    tuples: list[NTuple] | None = None
    dropped: dict[str, int]
    params: dict[str, Any]
    positive_only: bool
    enqueued: int
    created_at: datetime


class VerdictCreate(BaseModel):
    """Body of ``POST /projects/{pid}/negatives/{triplet_id}/verdict``."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["negative", "false_negative"]
    annotator: SafeStr = Field(min_length=1, max_length=200)


class ItemBrief(BaseModel):
    """The parts of an item a verifier needs to see."""

    item_id: int
    external_id: str
    text: str | None
    labels: list[str] | None = None
    label_source: str | None = None


class VerifyTask(BaseModel):
    """A mined negative to verify: "is ``negative`` really not a ``label``?"."""

    triplet_id: int
    run_id: int
    label: str
    question: str
    anchor: ItemBrief
    positive: ItemBrief | None
    negative: ItemBrief
    anchor_negative_score: float
    lease_expires_at: datetime


class VerifyBatch(BaseModel):
    """``GET /projects/{pid}/negatives/verify/next``."""

    items: list[VerifyTask]


class VerdictRead(BaseModel):
    """A recorded verdict."""

    triplet_id: int
    run_id: int
    verdict: str
    annotator: str | None
    label: str | None
    negative_id: int
    annotation_id: int | None
    decided_at: datetime | None


class RunReport(BaseModel):
    """A mining run with what annotators found when they verified its negatives."""

    run_id: int
    created_at: datetime
    params: dict[str, Any]
    config_key: str
    n_anchors: int
    n_triplets: int
    dropped: dict[str, Any]
    queued: int
    verified: int
    negatives: int
    false_negatives: int
    false_negative_rate: float | None


class ConfigReport(BaseModel):
    """Verification results summed over the runs that used one mining configuration."""

    config_key: str
    config: dict[str, Any]
    runs: list[int]
    verified: int
    false_negatives: int
    false_negative_rate: float | None


class RunsReport(BaseModel):
    """``GET /projects/{pid}/negatives/runs``."""

    runs: list[RunReport]
    configs: list[ConfigReport]


class TrainNegatives(BaseModel):
    """``negatives`` of a train request: confirmed and PU ("not c") negatives for the trainer.

    Confirmed negatives (verdict ``negative`` on a mined negative) train as human labels of
    weight 1: the other label in binary projects, a complementary "not c" target otherwise.
    PU negatives come from the unlabeled pool of a positive-only project (human labels of one
    class), filtered against likely false negatives (:mod:`app.sampling.pu`).
    """

    model_config = ConfigDict(extra="forbid")

    confirmed: bool = Field(True, description="train on annotator-confirmed negatives")
    pu: bool | None = Field(
        None,
        description="draw negatives from the unlabeled pool (PU); default: on when only one "
        "class has human labels in a binary or multilabel project (multiclass: set true)",
    )
    pu_weight: float = Field(0.5, gt=0.0, le=10.0, description="loss weight of a PU negative")
    max_pu_negatives: int = Field(10_000, ge=1, le=1_000_000)
    margin: float | None = Field(
        0.0,
        ge=-2.0,
        le=2.0,
        description="drop candidates more similar to their nearest positive p than p's own "
        "nearest other positive, minus margin; null turns it off",
    )
    max_similarity: float | None = Field(
        None, ge=-1.0, le=1.0, description="similarity ceiling to the nearest positive"
    )
    rocchio: bool = Field(
        False, description="drop candidates closer to the positive Rocchio prototype"
    )
    max_predicted_probability: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="drop candidates the active model predicts as the class above this",
    )
