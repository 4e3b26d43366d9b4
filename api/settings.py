"""Service settings, read from the environment (prefix ``GRAPHROUTER_``) with pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graph_store.factory import default_location
from graphrouter.embeddings import DEFAULT_CACHE, DEFAULT_THREADS  # numpy only at import: no torch
from graphrouter.paths import DEFAULT_CHECKPOINT


class Settings(BaseSettings):
    """Every field can be set by an environment variable: ``store`` by ``GRAPHROUTER_STORE``, and so on."""

    model_config = SettingsConfigDict(env_prefix="GRAPHROUTER_", extra="ignore")

    store: str = Field(
        default_factory=default_location,
        description="graph store: a file path (embedded) or a bolt:// / neo4j:// URI (credentials from NEO4J_USER, "
        "NEO4J_PASSWORD, NEO4J_DATABASE); default $GRAPHROUTER_STORE, else $NEO4J_URI, else .graphrouter/graph.db",
    )
    checkpoint: Path = Field(DEFAULT_CHECKPOINT, description="the trained router (graphrouter train)")
    embedding_model: str | None = Field(
        None, description="embedding model; default: the checkpoint's own (a different one is refused)"
    )
    embedding_cache: Path | None = Field(DEFAULT_CACHE, description="SQLite cache of text embeddings")
    embedding_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx: the model exported once, run by onnxruntime (faster); torch: sentence-transformers"
    )
    embedding_threads: int = Field(
        DEFAULT_THREADS, ge=1, description="onnxruntime threads per embedding (idle threads sleep)"
    )
    api_key: SecretStr | None = Field(
        None, description="key required on writes (Authorization: Bearer <key>); unset means writes are refused"
    )
    max_query_chars: int = Field(20_000, ge=1, description="longest query text accepted")
    max_batch_size: int = Field(100, ge=1, description="most queries in one /v1/route/batch call")
    max_outcomes: int = Field(10_000, ge=1, description="most rows in one POST /v1/outcomes call")
    train_router: str = Field("gnn", min_length=1, description="router that POST /v1/train fits (registry name)")
    train_params: dict[str, Any] = Field(
        default_factory=dict,
        description='keyword arguments of that router\'s constructor, as JSON, e.g. {"seeds": [0], "max_episodes": 20}',
    )
    torch_threads: int | None = Field(
        1,
        ge=1,
        description="torch intra-op threads for the whole process (torch.set_num_threads is process-wide: routing and "
        "a background training share the pool, each running on this many); unset leaves torch's default",
    )
    explore_default: bool = Field(
        False, description="route requests that do not say explore=true/false explore (within the budget)"
    )
    explore_share: float = Field(
        0.1, ge=0, le=1, allow_inf_nan=False, description="at most this share of routed requests explores"
    )
    explore_usd_per_1k: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="at most this much extra expected USD per 1,000 routed requests goes to exploring (unset: none)",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("explore_usd_per_1k", mode="before")
    @classmethod
    def _empty_usd_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("torch_threads", mode="before")
    @classmethod
    def _empty_threads_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("embedding_model", mode="before")
    @classmethod
    def _empty_model_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
