"""Service settings, read from the environment (prefix ``GRAPHROUTER_``) with pydantic-settings."""

from __future__ import annotations

import fnmatch
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graph_store.factory import default_location
from graphrouter.embeddings import DEFAULT_CACHE, DEFAULT_THREADS  # numpy only at import: no torch
from graphrouter.exploration import BURST, TASK_QUIZ
from graphrouter.paths import DEFAULT_CHECKPOINT

# The service's own secrets: an upstream may never name one as its key, whatever GRAPHROUTER_UPSTREAM_KEY_ENVS says
# (the proxy would send it to the upstream's address, which whoever holds the API key chooses).
SERVICE_ENV_PREFIXES = ("GRAPHROUTER_", "NEO4J_")
_KEY_ENV_PATTERN = re.compile(r"[A-Z0-9_*?]+")


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
    max_query_chars: int = Field(
        20_000,
        ge=1,
        description="longest query text accepted (routes, outcomes); the proxy routes and stores a longer last user "
        "message on its first that many characters",
    )
    max_batch_size: int = Field(100, ge=1, description="most queries in one /v1/route/batch call")
    max_outcomes: int = Field(10_000, ge=1, description="most rows in one POST /v1/outcomes call")
    max_body_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1,
        description="largest request body accepted, bytes (413 above it, refused before it is read); a batch of 100 "
        "queries of 20,000 characters, or 10,000 outcome rows with new query texts, may need more",
    )
    rate_limit: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="requests per second per client (the API key if the request carries it, else the client "
        "address), 429 with Retry-After above it; unset (the default) means no limit; /health, /ready, /metrics are "
        "never limited",
    )
    rate_burst: int | None = Field(
        None, ge=1, description="requests a client may send at once before the rate applies; default: one second's"
    )
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
    load_in_background: bool = Field(
        False,
        description="load the checkpoint and register the store's candidates in a background thread after the port "
        "opens (/ready reports progress; routes answer 503 with Retry-After meanwhile); `serve` turns it on unless "
        "set; off (the default for an app built in-process, e.g. tests) loads it before the app starts serving",
    )
    store_query_texts: bool = Field(
        True,
        description="store the text of each query the proxy forwards (its last user message) as a Query node; off: "
        "the node holds a placeholder and the text's hash id, no text (see api/proxy.py)",
    )
    proxy_key: SecretStr | None = Field(
        None,
        description="key(s) of POST /v1/chat/completions and /v1/feedback (Authorization: Bearer <key>), separate "
        "from api_key; several keys comma-separated, each rate-limited on its own; unset means the proxy is off",
    )
    upstream_key_envs: str = Field(
        "*_API_KEY",
        description="the environment variables an LLM's upstream may name as its key (api_key_env), comma-separated "
        "names or patterns (* and ?), e.g. '*_API_KEY,HF_TOKEN'; the service's own (GRAPHROUTER_*, NEO4J_*) never: the "
        "proxy sends the variable's value to the upstream's address",
    )
    proxy_max_attempts: int = Field(
        3, ge=1, description="candidates the router tries in ranking order when an upstream fails (5xx, timeout)"
    )
    proxy_connect_timeout: float = Field(
        5.0, gt=0, allow_inf_nan=False, description="seconds to connect to an upstream"
    )
    proxy_timeout: float = Field(
        60.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds an upstream may stay silent (waiting for its answer or its next chunk)",
    )
    proxy_deadline: float = Field(
        600.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds an upstream has for a whole answer that is not streamed, from the call's start (waiting "
        "for a free connection included: keep it above 5 s); one trickling a byte at a time would otherwise hold the "
        "call for ever; a stream is bounded by proxy_timeout between chunks only",
    )
    proxy_max_answer_bytes: int = Field(
        16_000_000,
        ge=1,
        description="largest upstream answer taken, bytes after decompression (a larger one is that upstream "
        "failing; a stream's events are taken one at a time, each at most this large)",
    )
    proxy_max_body_bytes: int = Field(1_000_000, ge=1, description="largest chat request body accepted, bytes")
    proxy_rate_limit: int = Field(
        600, ge=0, description="requests per minute per proxy key (bursts up to that many); 0: no limit"
    )
    sync_interval: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds between reads of the store's change log, to apply what other replicas changed; 0: off",
    )
    changelog_keep: int = Field(
        10_000,
        ge=0,
        description="change log retention: the newest this many changes are never pruned (with changelog_keep_seconds: "
        "a change is pruned only when it is older than both)",
    )
    changelog_keep_seconds: float = Field(
        3600.0, ge=0, allow_inf_nan=False, description="change log retention: changes younger than this (s) are kept"
    )
    changelog_prune_interval: float = Field(
        60.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds between prunings of the change log by this replica's follower (a replica that fell "
        "behind the pruned log resyncs from the store); 0: this replica never prunes",
    )
    training_lease_seconds: float = Field(
        3600.0,
        gt=0,
        le=7 * 24 * 3600.0,
        allow_inf_nan=False,
        description="replicas train one at a time: another replica's training claim blocks POST /v1/train here for "
        "at most this long without its end (a replica that died while training)",
    )
    pending_ttl_seconds: float = Field(
        7 * 24 * 3600.0,
        ge=0,
        le=10 * 365 * 24 * 3600.0,
        allow_inf_nan=False,
        description="a proxied call's pending outcome whose feedback has not come within this many seconds is "
        "dropped by the follower at each pruning (every changelog_prune_interval s; none if that is 0); at most 10 "
        "years; 0: kept until its feedback",
    )
    batch_window_ms: float = Field(
        0.0,
        ge=0,
        le=50,
        description="route micro-batching: requests arriving within this window while a batch runs share one "
        "embedding call and one GNN pass (a lone request never waits); 0: off",
    )
    batch_max: int = Field(32, ge=1, le=1024, description="most route requests in one micro-batch")
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
    explore_burst: int = Field(
        BURST,
        ge=1,
        le=1_000_000,
        description="at most this many routed requests' worth of unused exploration allowance is saved up: after a "
        "long run of plain routes, about SHARE × this / (1 − SHARE) exploring requests explore in a row (111 at the "
        "defaults; the saved allowance and their own), then SHARE of them again (and at most this many requests' "
        "worth of GRAPHROUTER_EXPLORE_USD_PER_1K is saved up)",
    )
    explore_quiz: int = Field(
        50,
        ge=0,
        le=10_000,
        description="an exploring request goes to a candidate with fewer than 50 outcomes behind its prediction "
        "(one new since training; picked at random) until it has this many outcomes in all (and, if registered from "
        "its description only, GRAPHROUTER_EXPLORE_TASK_QUIZ on the query's task), where a perfect answer (once it "
        "has outcomes on the task, their mean's 99.9% upper bound) could pay for its cost; 0: off, the per-task quiz "
        "too",
    )
    explore_task_quiz: int = Field(
        TASK_QUIZ,
        ge=0,
        le=10_000,
        description="a candidate registered from its description only is also quizzed by exploring requests on a "
        "task while it has fewer than this many outcomes learned online on that task (its learned prediction has a "
        "level per task); 0: off, as is every quiz when GRAPHROUTER_EXPLORE_QUIZ is 0",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    @property
    def burst(self) -> int:
        """The rate limit's bucket size: ``rate_burst``, else one second's worth of requests (at least 1)."""
        return self.rate_burst or max(1, math.ceil(self.rate_limit or 1))

    @property
    def store_may_be_created(self) -> bool:
        """Whether a missing embedded store file may be created: only for a service with no checkpoint yet (a start
        from nothing). One missing beside a checkpoint is a mistyped location, not a store to serve empty."""
        return not self.checkpoint.exists()

    @field_validator("api_key", "proxy_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def proxy_keys(self) -> list[str]:
        """The configured proxy keys (GRAPHROUTER_PROXY_KEY, comma-separated), blanks dropped."""
        if self.proxy_key is None:
            return []
        return [k.strip() for k in self.proxy_key.get_secret_value().split(",") if k.strip()]

    @field_validator("upstream_key_envs")
    @classmethod
    def _key_env_patterns(cls, value: str) -> str:
        patterns = [p.strip() for p in value.split(",") if p.strip()]
        bad = [p for p in patterns if not _KEY_ENV_PATTERN.fullmatch(p)]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not an environment variable name or pattern: use A-Z, 0-9, _ and the wildcards * ?"
            )
        own = [p for p in patterns if p.startswith(SERVICE_ENV_PREFIXES)]
        if own:
            raise ValueError(f"{own[0]!r}: the service's own settings (GRAPHROUTER_*, NEO4J_*) are never sent upstream")
        return ",".join(patterns)

    def key_env_problem(self, name: str) -> str | None:
        """Why an upstream may not name environment variable ``name`` as its key (None: it may)."""
        if name.startswith(SERVICE_ENV_PREFIXES):
            return f"{name} is one of the service's own settings ({', '.join(p + '*' for p in SERVICE_ENV_PREFIXES)})"
        if not any(fnmatch.fnmatchcase(name, p) for p in self.upstream_key_envs.split(",") if p):
            return (
                f"{name} is not among the variables upstreams may use (GRAPHROUTER_UPSTREAM_KEY_ENVS="
                f"{self.upstream_key_envs!r}); add it there on the server"
            )
        return None

    @field_validator("explore_usd_per_1k", mode="before")
    @classmethod
    def _empty_usd_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("torch_threads", "rate_limit", "rate_burst", mode="before")
    @classmethod
    def _empty_threads_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("embedding_model", mode="before")
    @classmethod
    def _empty_model_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
