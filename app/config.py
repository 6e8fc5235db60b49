"""Service settings, read from the environment (prefix ``QUARRY_``)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All tunables of the service; nothing connects when this is built."""

    model_config = SettingsConfigDict(env_prefix="QUARRY_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".quarry"), description="Artifact store and default SQLite file.")
    database_url: str = Field("", description="SQLAlchemy URL; default sqlite under data_dir.")
    job_runner: Literal["thread", "process", "redis", "inline"] = Field(
        "process",
        description="process: a child process of the API (embedded default); thread: a thread "
        "of the API process; redis: the Dramatiq queue, run by `quarry worker`; inline: tests.",
    )
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (job_runner=redis).")
    broker_namespace: str = Field("quarry", description="Prefix of every Redis key of the queue.")
    job_queue: str = Field("quarry-jobs", description="Queue name the API sends to, workers read.")
    job_heartbeat_seconds: float = Field(
        5.0, gt=0, description="A running job's heartbeat interval (its own thread)."
    )
    job_stale_seconds: float = Field(
        60.0, gt=0, description="A running job without a heartbeat for this long is failed."
    )
    scheduler_enabled: bool = Field(
        True, description="Run the schedule/reaper loop in this process (API and workers)."
    )
    scheduler_poll_seconds: float = Field(5.0, gt=0, description="Schedule/reaper loop period.")
    queue_background_refresh: bool = Field(
        True,
        description="Compute /next rankings in a background thread (a new one when the "
        "ranking runs low or a retrain activated a checkpoint; the previous one is served "
        "meanwhile). False computes them inside the /next that needs one.",
    )
    gc_freeze: bool = Field(
        True,
        description="After start-up, move the process's objects to the garbage collector's "
        "permanent generation (gc.freeze): a full collection then skips them instead of "
        "pausing every request for ~0.4 s.",
    )
    auth_cache_seconds: float = Field(
        5.0, ge=0, le=300,
        description="How long a resolved API key or UI session is reused without a database "
        "read (0: read on every request). Changes made through this process apply at once; "
        "a key revoked by another process (quarry keys revoke) stops working within this time.",
    )
    lease_seconds: int = Field(600, ge=10, description="How long /next holds an item.")
    import_inline_max: int = Field(
        256, ge=0, description="Text imports above this many rows run as a background job."
    )
    max_upload_bytes: int = Field(
        200 * 1024 * 1024, ge=1, description="Largest import body (bytes); above it 413."
    )
    embed_batch_size: int = Field(64, ge=1)
    default_queue_strategy: str = "margin"
    cold_start_strategy: str = "typical"
    bootstrap_admin_key: str = Field(
        "", description="At startup, ensure an admin key with this secret (>= 24 chars); "
        "empty: none. There is no setting that turns authentication off.",
    )
    pseudo_label_threshold: float = Field(0.95, gt=0.0, le=1.0)
    torch_threads: int = Field(
        1, ge=0, description="torch threads in jobs; 0 keeps torch's default (all cores)."
    )
    job_nice: int = Field(
        10, ge=0, le=19,
        description="Niceness a job process (quarry worker, the process runner's child) adds "
        "to itself, so training on a host shared with the API never takes CPU the API needs "
        "(0 on a dedicated worker host).",
    )
    mc_dropout_samples: int = Field(
        10, ge=0, description="MC-dropout passes saved as mc_probs.npy (for BALD); 0 turns it off."
    )
    mc_dropout_max_elements: int = Field(
        200_000_000,
        ge=0,
        description="Skip mc_probs.npy when pool * classes * samples exceeds this (float16 file).",
    )
    served_window_seconds: int = Field(
        3600, ge=0, description="Batch queries skip items /next served within this many seconds."
    )
    index_exact_below: int = Field(
        50_000, ge=0, description="Pools below this size get an exact (flat) vector index."
    )
    index_approximate: Literal["ivf", "hnsw"] = Field(
        "ivf", description="Approximate index kind at or above index_exact_below."
    )
    index_recall_target: float = Field(
        0.95, gt=0.0, le=1.0, description="recall@10 the approximate index is tuned to reach."
    )
    near_duplicate_similarity: float = Field(
        0.98, gt=-1.0, le=1.0, description="Imported rows this similar to an item are flagged."
    )
    validation_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of human labels held out (by item-id hash)."
    )
    validation_min_holdout: int = Field(
        50, ge=1, description="Below this many held-out labels, validate by cross-validation."
    )
    pseudo_confirm_share: float = Field(
        0.05, ge=0.0, le=1.0, description="Share of a checkpoint's pseudo-labels sent to review."
    )
    pseudo_confirm_max: int = Field(
        200, ge=0, description="At most this many pseudo-labels per checkpoint sent to review."
    )

    webhook_timeout_seconds: float = Field(
        10.0, gt=0, description="HTTP timeout of one webhook delivery attempt."
    )
    webhook_max_attempts: int = Field(
        8, ge=1, description="A webhook delivery is marked failed after this many attempts."
    )
    webhook_backoff_seconds: float = Field(
        10.0, ge=0, description="First retry delay; doubles per attempt, with full jitter."
    )
    webhook_backoff_max_seconds: float = Field(
        3600.0, ge=0, description="Upper bound of one webhook retry delay."
    )
    webhook_poll_seconds: float = Field(
        2.0, gt=0, description="Period of the webhook delivery loop (API and workers)."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="Log lines of serve/worker: one JSON object per line, or text."
    )

    @model_validator(mode="after")
    def _default_database_url(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite+pysqlite:///{(self.data_dir / 'quarry.db').resolve()}"
        return self


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, built once per process."""
    return Settings()
