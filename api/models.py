"""Request and response bodies of the API (pydantic): what OpenAPI documents and what the routes return."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graph_store import Agent, LLMNode, Task


class _Strict(BaseModel):
    """Unknown fields are refused (a typo such as ``top_k`` gets a 422 naming it, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")


def _not_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty or only whitespace")
    return value


# ---- routing ------------------------------------------------------------------------------------------------
class Weights(_Strict):
    w_effect: float = Field(ge=0, allow_inf_nan=False, description="weight of predicted effect (quality)")
    w_cost: float = Field(ge=0, allow_inf_nan=False, description="weight of normalised predicted cost")


class RouteRequest(_Strict):
    query: str = Field(description="the query text (never logged in full)")
    task: str | None = Field(None, min_length=1, description="the query's task if known; inferred otherwise")
    k: int = Field(3, ge=1, description="how many candidates to return (at most the number of candidates)")
    scenario: str | None = Field(
        None, description="performance_first, balance or cost_first (default balance); not with weights"
    )
    weights: Weights | None = Field(None, description="explicit utility weights instead of a scenario")
    budget: float | None = Field(None, gt=0, allow_inf_nan=False, description="max predicted USD for this query")
    candidates: list[str] | None = Field(None, description="choose only among these LLMs / agents")

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        return _not_blank(value, "query")


class Candidate(BaseModel):
    name: str
    kind: str = Field(description="LLM or Agent")
    effect: float = Field(description="predicted effect (quality) in [0, 1]")
    cost: float = Field(description="predicted cost of this query, USD")
    utility: float = Field(
        description="w_effect · effect − w_cost · normalised cost, minus (GNN) w_effect · margin / √(1 + observed "
        "outcomes): a candidate known from few outcomes ranks lower until they show it is better"
    )


class RouteResponse(BaseModel):
    task: str = Field(description="the task used: the one given, or the one inferred")
    task_inferred: bool
    weights: Weights
    candidates: list[Candidate] = Field(description="best first")
    checkpoint: str = Field(description="version of the checkpoint that answered")


class BatchRouteRequest(_Strict):
    queries: list[RouteRequest] = Field(min_length=1, description="at most GRAPHROUTER_MAX_BATCH_SIZE (100) items")


class BatchRouteResponse(BaseModel):
    results: list[RouteResponse] = Field(description="one per query, in order")


# ---- LLMs ---------------------------------------------------------------------------------------------------
class OutcomeIn(_Strict):
    query_id: str = Field(min_length=1, description="id of a stored query")
    effect: float = Field(ge=0, le=1, allow_inf_nan=False, description="observed effect in [0, 1]")
    cost: float = Field(ge=0, allow_inf_nan=False, description="observed cost, USD")


class LLMIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=20_000)
    input_price: float = Field(ge=0, allow_inf_nan=False, description="USD per 1M input tokens")
    output_price: float = Field(ge=0, allow_inf_nan=False, description="USD per 1M output tokens")
    size_b: float | None = Field(None, ge=0, allow_inf_nan=False, description="parameters, billions")
    outcomes: list[OutcomeIn] | None = Field(None, description="observed outcomes of it on stored queries")

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        return _not_blank(value, "name")

    def node(self) -> LLMNode:
        return LLMNode(self.name, self.description, self.input_price, self.output_price, self.size_b)


class LLMOut(BaseModel):
    name: str
    description: str
    input_price: float
    output_price: float
    size_b: float | None
    routable: bool = Field(description="the scorer routes to it now")

    @classmethod
    def of(cls, node: LLMNode, routable: bool) -> LLMOut:
        return cls(
            name=node.name,
            description=node.description,
            input_price=node.input_price,
            output_price=node.output_price,
            size_b=node.size_b,
            routable=routable,
        )


class LLMRegistered(LLMOut):
    created: bool = Field(description="false when the same LLM was already registered (idempotent)")
    outcomes_written: int
    note: str | None = Field(None, description="why it is not routable yet, if it is not")


class LLMDetail(LLMOut):
    outcomes: int = Field(description="stored outcome edges of it")


class LLMList(BaseModel):
    data: list[LLMOut]
    count: int = Field(description="LLMs in the store (all pages)")


class Deleted(BaseModel):
    name: str
    deleted: bool = True


class ProbeOut(BaseModel):
    id: str = Field(description="the stored query's id: post the candidate's outcome on it under this id")
    text: str
    task: str


class ProbeSet(BaseModel):
    name: str
    k: int = Field(description="probes asked for (fewer are returned if fewer unanswered queries are stored)")
    seed: int
    probes: list[ProbeOut] = Field(
        description="the stored queries whose outcomes would tell the router most about this candidate: spread "
        "over tasks by traffic × its uncertainty there, within a task those the strong known candidates disagree "
        "on most; queries it already answered are skipped"
    )


# ---- agents -------------------------------------------------------------------------------------------------
class AgentIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    llm: str = Field(min_length=1, description="the registered LLM it runs on (BACKED_BY); it is priced as that LLM")
    description: str = Field("", max_length=20_000)
    strategy: str = Field("", max_length=200, description="framework or strategy: ReAct, CoT, tool use, ...")
    outcomes: list[OutcomeIn] | None = Field(None, description="observed outcomes of it on stored queries")

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        return _not_blank(value, "name")

    def node(self) -> Agent:
        return Agent(self.name, self.llm, self.description, self.strategy)


class AgentOut(BaseModel):
    name: str
    llm: str = Field(description="the LLM it runs on")
    description: str
    strategy: str
    input_price: float | None = Field(description="its LLM's, USD per 1M input tokens (null if that LLM is gone)")
    output_price: float | None = Field(description="its LLM's, USD per 1M output tokens")
    routable: bool = Field(description="the scorer routes to it now")

    @classmethod
    def of(cls, node: Agent, backing: LLMNode | None, routable: bool) -> AgentOut:
        return cls(
            name=node.name,
            llm=node.llm,
            description=node.description,
            strategy=node.strategy,
            input_price=backing.input_price if backing else None,
            output_price=backing.output_price if backing else None,
            routable=routable,
        )


class AgentRegistered(AgentOut):
    created: bool = Field(description="false when the same agent was already registered (idempotent)")
    outcomes_written: int
    note: str | None = Field(None, description="why it is not routable yet, if it is not")


class AgentDetail(AgentOut):
    outcomes: int = Field(description="stored outcome edges of it (HANDLED_BY)")


class AgentList(BaseModel):
    data: list[AgentOut]
    count: int = Field(description="agents in the store (all pages)")


# ---- tasks --------------------------------------------------------------------------------------------------
class TaskIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=20_000)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        return _not_blank(value, "name")

    def node(self) -> Task:
        return Task(self.name, self.description)


class TaskOut(BaseModel):
    name: str
    description: str
    trained: bool = Field(description="the serving checkpoint knows it: /v1/route accepts task=<name>")

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
class ObservedOutcome(_Strict):
    query_id: str | None = Field(
        None, min_length=1, description="a stored query's id; or the id to give a new query sent as `query`"
    )
    query: str | None = Field(None, description="the query's text, to add a query the store does not have yet")
    task: str | None = Field(None, min_length=1, description="a registered task; required with `query`")
    candidate: str = Field(min_length=1, description="the LLM or agent that answered")
    effect: float = Field(ge=0, le=1, allow_inf_nan=False, description="observed effect in [0, 1]")
    cost: float = Field(ge=0, allow_inf_nan=False, description="observed cost, USD")
    source: str = Field("api", max_length=200)
    observed_at: str | None = Field(None, max_length=64, description="ISO-8601; default: when it is received")

    @model_validator(mode="after")
    def _query_given(self) -> ObservedOutcome:
        if self.query is None:
            if self.query_id is None:
                raise ValueError("give query_id (a stored query), or query (its text) with task")
            if self.task is not None:
                raise ValueError("task is only taken with query (the text of a query to add)")
        else:
            _not_blank(self.query, "query")
            if self.task is None:
                raise ValueError("task is required with query (the text of a query to add)")
        return self


class OutcomesIn(_Strict):
    outcomes: list[ObservedOutcome] = Field(
        min_length=1, description="at most GRAPHROUTER_MAX_OUTCOMES (10,000) rows; written all or nothing"
    )


class OutcomesWritten(BaseModel):
    written: int = Field(description="outcome edges written (new or updated)")
    queries_added: int
    applied_to_scorer: int = Field(description="outcomes the serving scorer uses now, without retraining")
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
