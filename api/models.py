"""Request and response bodies of the API (pydantic): what OpenAPI documents and what the routes return.

Request bodies are strict: JSON types are not coerced (``"k": "3"``, ``"k": true`` and ``"w_effect": "1_0"`` are
422s; an integer is accepted where a number is expected), unknown fields are refused, and every string is checked
where it enters by one of the types of :mod:`api.types`, whose JSON Schema (``pattern``, ``minLength``,
``maxLength``) says the same as the validation:

- ``text(n)``: valid Unicode (no lone surrogates such as ``"\\ud800"``), no NUL;
- ``QueryText``: such a text with at least one non-whitespace character;
- ``Name`` (LLM, agent and task names and references to them): graph_store's rule, ``NAME_RULE``;
- ``QueryId``: no control characters or line breaks, not empty.

Prices and costs are bounded as in the store (``MAX_PRICE``, ``MAX_COST``), so the API answers 422 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer, model_validator

from api.types import (
    Cost,
    Description,
    Name,
    NewName,
    QueryId,
    QueryText,
    Scenario,
    ShortText,
    Strict,
    Timestamp,
)
from graph_store import Task
from graphrouter.rewards import MAX_WEIGHT
from graphrouter.route_request import MAX_INPUT_TOKENS
from graphrouter.route_result import significant


# ---- errors -------------------------------------------------------------------------------------------------
class ErrorOut(BaseModel):
    """Every error answer (api/errors.py)."""

    detail: str = Field(description="what is wrong, naming the field or the setting")


class FieldError(BaseModel):
    field: str = Field(description="where: queries[3].k, limit (query parameter), body, ...")
    problem: str
    type: str = Field(description="pydantic's error type: missing, int_type, value_error, ...")


class ProxyErrorOut(ErrorOut):
    """An error of the OpenAI-compatible ``/v1/chat/completions``: the message also in OpenAI's shape."""

    error: dict[str, Any] | None = Field(
        None, description="OpenAI's error object {message, type, param, code}, read by its clients"
    )


class ValidationErrorOut(ErrorOut):
    """A 422: ``detail`` joins the problems; ``errors`` lists them, one per invalid field (a request refused by its
    handler, e.g. an outcome naming an unknown candidate, has one entry: the field its message names, or ``body``)."""

    errors: list[FieldError] | None = Field(None, description="one per invalid field")


# ---- routing ------------------------------------------------------------------------------------------------
class Weights(Strict):
    w_effect: float = Field(
        ge=0, le=MAX_WEIGHT, allow_inf_nan=False, description="weight of predicted effect (quality)"
    )
    w_cost: float = Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False, description="weight of normalised predicted cost")


class RouteRequest(Strict):
    query: QueryText = Field(
        description="the query text (never logged in full); at most GRAPHROUTER_MAX_QUERY_CHARS (20,000) characters"
    )
    task: Name | None = Field(None, description="the query's task if known; inferred otherwise")
    k: int = Field(
        3, ge=1, description="at most how many candidates to return (fewer when `candidates` or `budget` allow fewer)"
    )
    scenario: Scenario | None = Field(
        None,
        description="performance_first, balance or cost_first (default balance; aliases: performance, perf, cost); "
        "not with weights",
    )
    weights: Weights | None = Field(None, description="explicit utility weights instead of a scenario")
    budget: float | None = Field(None, gt=0, allow_inf_nan=False, description="max predicted USD for this query")
    candidates: list[Name] | None = Field(None, description="choose only among these LLMs / agents")
    explore: bool | None = Field(
        None,
        description="allow exploration: the first candidate may be a Thompson sample's pick instead of the argmax, "
        "within the operator's budget (GRAPHROUTER_EXPLORE_SHARE, GRAPHROUTER_EXPLORE_USD_PER_1K) and this "
        "request's budget and candidates; default GRAPHROUTER_EXPLORE_DEFAULT (off)",
    )
    input_tokens: int | None = Field(
        None,
        ge=0,
        le=MAX_INPUT_TOKENS,
        description="the input tokens to price the call with, when the prompt you will send is more than `query` (a "
        "system prompt, a chat's history, a document: route on its question, price all of it); default: the "
        "query's own, counted with the MiniLM WordPiece tokenizer",
    )
    max_output_tokens: int | None = Field(
        None,
        ge=1,
        le=MAX_INPUT_TOKENS,
        description="the call's cap on output tokens (the max_tokens you will send): an LLM's predicted cost is then "
        "at most the input and this many output tokens at its prices (not an agent's, which may make several calls)",
    )


class Candidate(BaseModel):
    name: str
    kind: str = Field(description="LLM or Agent")
    effect: float = Field(description="predicted effect (quality) in [0, 1]")
    cost: float = Field(description="predicted cost of this query, USD")
    utility: float = Field(
        description="w_effect · effect − w_cost · normalised cost, minus (GNN) w_effect · margin / √(1 + observed "
        "outcomes): a candidate known from few outcomes ranks lower until they show it is better"
    )

    @field_serializer("effect", "cost", "utility")
    def _significant(self, value: float) -> float:
        """12 significant digits: a price × tokens product answers 0.0001033, not 0.00010330000000000002."""
        return significant(value)


class RouteResponse(BaseModel):
    task: str = Field(description="the task used: the one given, or the one inferred")
    task_inferred: bool
    weights: Weights
    candidates: list[Candidate] = Field(description="best first")
    checkpoint: str = Field(description="version of the checkpoint that answered")
    explored: bool = Field(False, description="the first candidate is an exploration's pick, not the argmax")
    explored_instead_of: str | None = Field(
        None, description="when explored: the candidate the argmax would have put first (it follows, if k allows)"
    )
    exploration_extra_cost: float = Field(
        0.0, description="when explored: the pick's predicted cost minus that argmax's (USD; negative if cheaper)"
    )

    @field_serializer("exploration_extra_cost")
    def _significant_cost(self, value: float) -> float:
        return significant(value)


class BatchRouteRequest(Strict):
    queries: list[RouteRequest] = Field(min_length=1, description="at most GRAPHROUTER_MAX_BATCH_SIZE (100) items")


class BatchRouteResponse(BaseModel):
    results: list[RouteResponse] = Field(description="one per query, in order")


# ---- deletions (LLMs, agents, tasks; their other bodies: api/candidate_models.py) ----------------------------
class Deleted(BaseModel):
    name: str
    deleted: bool = True
    outcomes_deleted: int | None = Field(
        None, description="the observed outcomes removed with an LLM or agent (the next training no longer has them)"
    )


# ---- tasks --------------------------------------------------------------------------------------------------
class TaskIn(Strict):
    name: NewName
    description: Description = ""

    def node(self) -> Task:
        return Task(self.name, self.description)


class TaskOut(BaseModel):
    name: str
    description: str
    trained: bool = Field(
        description="the serving checkpoint knows it, with this description: /v1/route accepts task=<name>"
    )

    @classmethod
    def of(cls, node: Task, trained: bool) -> TaskOut:
        return cls(name=node.name, description=node.description, trained=trained)


class TaskRegistered(TaskOut):
    created: bool = Field(description="false when the same task was already registered (idempotent)")
    note: str | None = Field(None, description="what is needed before routes can name it, if anything")


class TaskDetail(TaskOut):
    queries: int = Field(description="stored queries of this task")


class TaskList(BaseModel):
    data: list[TaskOut]
    count: int = Field(description="tasks in the store (all pages)")


# ---- outcomes -----------------------------------------------------------------------------------------------
class ObservedOutcome(Strict):
    query_id: QueryId | None = Field(
        None, description="a stored query's id; or the id to give a new query sent as `query`"
    )
    query: QueryText | None = Field(
        None, description="the query's text, to add a query the store does not have yet (GRAPHROUTER_MAX_QUERY_CHARS)"
    )
    task: Name | None = Field(None, description="a registered task; required with `query`")
    candidate: Name = Field(description="the LLM or agent that answered")
    effect: float = Field(ge=0, le=1, allow_inf_nan=False, description="observed effect in [0, 1]")
    cost: Cost = Field(description="observed cost, USD (at most 1,000)")
    source: ShortText = "api"
    observed_at: Timestamp = Field(None, description="ISO-8601; default (or empty): when it is received")

    @model_validator(mode="after")
    def _query_given(self) -> ObservedOutcome:
        if self.query is None:
            if self.query_id is None:
                raise ValueError("give query_id (a stored query), or query (its text) with task")
            if self.task is not None:
                raise ValueError("task is only taken with query (the text of a query to add)")
        else:
            if self.task is None:
                raise ValueError("task is required with query (the text of a query to add)")
        return self


class OutcomesIn(Strict):
    outcomes: list[ObservedOutcome] = Field(
        min_length=1, description="at most GRAPHROUTER_MAX_OUTCOMES (10,000) rows; written all or nothing"
    )


class OutcomesWritten(BaseModel):
    written: int = Field(description="outcome edges written (new or updated)")
    queries_added: int
    applied_to_scorer: int = Field(
        description="outcomes the serving scorer learned now, without retraining (it corrects that candidate's "
        "predictions, and the query becomes a neighbour for later requests)"
    )
    pending_retrain: int = Field(description="outcomes the scorer will use only after the next training")


# ---- training -----------------------------------------------------------------------------------------------
class TrainStatusOut(BaseModel):
    status: Literal["idle", "running", "succeeded", "failed"]
    router: str = Field(description="the router trained (GRAPHROUTER_TRAIN_ROUTER)")
    params: dict[str, Any] = Field(description="its constructor arguments (GRAPHROUTER_TRAIN_PARAMS)")
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    checkpoint: str | None = Field(None, description="version of the checkpoint this run wrote")
    queries: int | None = Field(None, description="queries it learned from")
    candidates: int | None = Field(None, description="routable candidates after the swap")
    error: str | None = Field(None, description="why it failed")
    serving: str | None = Field(None, description="version of the checkpoint serving now")


# ---- graph and health ---------------------------------------------------------------------------------------
class GraphStats(BaseModel):
    backend: str
    counts: dict[str, int] = Field(description="nodes by label and edges by relationship type")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready or not ready")
    store: str = Field(description="ok, or why not")
    scorer: str = Field(description="ok, or why not")
    checkpoint: str | None = None
    router: str | None = None
    candidates: int | None = Field(None, description="routable candidates")
    change_version: int | None = Field(
        None, description="the last version of the store's change log this replica has followed (None: not yet)"
    )
    change_resyncs: int | None = Field(
        None, description="full resyncs from the store since the start (the log had been pruned past this replica)"
    )
    pending_expired: int | None = Field(
        None,
        description="pending outcomes (proxied calls) this replica dropped since the start because their feedback "
        "did not come within GRAPHROUTER_PENDING_TTL_SECONDS",
    )
    replica: str | None = Field(None, description="this replica's id (the origin of the changes it writes)")
