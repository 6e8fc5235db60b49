"""Vector index description and similarity search bodies."""

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.ids import DbId


class IndexRead(BaseModel):
    """The project's vector index: kind, size, build time and measured recall@10."""

    kind: str
    size: int
    dim: int
    build_seconds: float | None = None
    calibrate_seconds: float | None = None
    recall_at_10: float | None = None
    recall_sample: int | None = None
    recall_target: float | None = None
    exact_below: int | None = None
    search_params: dict[str, int]
    built_size: int | None = None
    added_since_build: int | None = None
    built_at: str | None = None
    updated_at: str | None = None
    space: str | None = None


class SearchRequest(BaseModel):
    """Body of ``POST /projects/{pid}/search``: exactly one of item_id, text or vector."""

    model_config = ConfigDict(extra="forbid")

    item_id: DbId | None = None
    text: str | None = Field(None, min_length=1, max_length=10_000)
    vector: list[float] | None = Field(None, min_length=1, max_length=10_000)
    k: int = Field(10, ge=1, le=1000)

    @model_validator(mode="after")
    def _one_of(self) -> "SearchRequest":
        given = [x for x in (self.item_id, self.text, self.vector) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of item_id, text or vector")
        return self


class SearchHit(BaseModel):
    """One similar item."""

    item_id: int
    external_id: str
    text: str | None
    labels: list[str] | None
    label_source: str | None
    similarity: float


class SearchResponse(BaseModel):
    """Nearest items, most similar first (the query item itself is left out)."""

    kind: str
    size: int
    results: list[SearchHit]


class NearDuplicate(BaseModel):
    """An imported row that nearly duplicates an existing item (or an earlier row)."""

    row: int
    new_item_id: int
    item_id: int
    similarity: float
