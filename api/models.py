"""Request and response bodies of the API (pydantic): what OpenAPI documents and what the routes return."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from graph_store import LLMNode


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
    utility: float = Field(description="w_effect · effect − w_cost · normalised cost")


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
