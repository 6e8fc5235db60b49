"""The project dashboard's JSON twin."""

from datetime import datetime

from pydantic import BaseModel

from app.schemas.jobs import JobRead


class Counts(BaseModel):
    """Items by status and current human/imported label."""

    items: int
    labeled: int
    pseudo_labeled: int
    unlabeled: int
    by_label: dict[str, int]


class Bucket(BaseModel):
    """Human labels in one time bucket."""

    start: datetime
    labels: int
    cumulative: int


class LabelsOverTime(BaseModel):
    """Human labels per bucket of ``bucket_seconds``, oldest first."""

    bucket_seconds: int
    buckets: list[Bucket]


class ClassBalance(BaseModel):
    """Current labels of one class by source."""

    label: str
    human: int
    imported: int
    pseudo: int


class CurvePoint(BaseModel):
    """One checkpoint: validation accuracy against the labels it learned from."""

    version: int
    n_labeled: int
    n_pseudo: int
    accuracy: float | None
    macro_f1: float | None
    active: bool
    created_at: datetime


class AnnotatorPace(BaseModel):
    """An annotator's labels and throughput (breaks over 5 minutes left out)."""

    annotator: str
    labels: int
    first_at: datetime
    last_at: datetime
    active_seconds: float
    labels_per_hour: float | None
    median_seconds_per_label: float | None


class PairAgreement(BaseModel):
    """Agreement of two annotators on the items both labeled."""

    a: str
    b: str
    n_items: int
    agreement: float
    kappa: float | None


class AnnotatorAgreement(BaseModel):
    """Share of an annotator's doubly labeled items where everyone else agreed."""

    annotator: str
    n_items: int
    agreement: float


class Agreement(BaseModel):
    """Inter-annotator agreement on items labeled by two or more annotators."""

    n_items: int
    pairwise_agreement: float | None
    pairs: list[PairAgreement]
    by_annotator: list[AnnotatorAgreement]


class Dashboard(BaseModel):
    """``GET /projects/{pid}/dashboard``."""

    counts: Counts
    labels_over_time: LabelsOverTime
    class_balance: list[ClassBalance]
    learning_curve: list[CurvePoint]
    jobs: list[JobRead]
    annotators: list[AnnotatorPace]
    agreement: Agreement
    model_disagreements: int | None
