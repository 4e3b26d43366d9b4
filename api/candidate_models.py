"""Request and response bodies of the LLM and agent resources (registration, details, lists, probe sets, upstreams):
strict requests as in :mod:`api.models`, which holds the other resources' bodies."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, model_validator

from api.settings import Settings
from api.types import (
    Cost,
    Description,
    LLMName,
    Name,
    Price,
    QueryId,
    ShortText,
    Strict,
)
from api.upstream import why_uncallable
from graph_store import LLM, Agent, InvalidInputError, LLMNode
from graph_store.schema import port_problem


# ---- LLMs ---------------------------------------------------------------------------------------------------
class OutcomeIn(Strict):
    query_id: QueryId = Field(description="id of a stored query")
    effect: float = Field(ge=0, le=1, allow_inf_nan=False, description="observed effect in [0, 1]")
    cost: Cost = Field(description="observed cost, USD (at most 1,000)")


class UpstreamIn(Strict):
    """How the proxy calls an LLM: an OpenAI-compatible endpoint. The key is never sent or stored, only the name of
    the server's environment variable that holds it."""

    base_url: str = Field(min_length=1, description="OpenAI-compatible base URL, e.g. https://api.openai.com/v1")
    model: str | None = Field(None, min_length=1, description="the upstream's model id; default: the LLM's name")
    api_key_env: str | None = Field(
        None, min_length=1, description="NAME of the server's environment variable holding the key (e.g. "
        "OPENAI_API_KEY); omit for an upstream without auth",
    )  # fmt: skip

    @model_validator(mode="after")
    def _store_rules(self) -> UpstreamIn:
        """The store's rules for an upstream (an http(s) URL with a host, no credentials in it; the key's variable
        name, not the key), checked here so a bad one is a 422 naming this body's fields, not the store's."""
        try:
            LLMNode("upstream", base_url=self.base_url, upstream_model=self.model, api_key_env=self.api_key_env)
        except InvalidInputError as exc:
            raise ValueError(str(exc).replace("LLM.upstream_model", "model").replace("LLM.", "")) from None
        if why := port_problem(self.base_url):  # refused here, not a failure at every call
            raise ValueError(f"base_url {self.base_url!r}: {why}")
        return self


class UpstreamOut(BaseModel):
    base_url: str
    model: str = Field(description="the model id sent upstream")
    api_key_env: str | None = Field(description="the environment variable named for the key (never its value)")
    api_key_set: bool | None = Field(description="whether that variable is set in the server's environment")
    problem: str | None = Field(
        None, description="why the proxy cannot call it now (e.g. a key variable it may not send); null: it can"
    )

    @classmethod
    def of(cls, node: LLMNode, settings: Settings) -> UpstreamOut | None:
        if node.base_url is None:
            return None
        env = node.api_key_env
        return cls(
            base_url=node.base_url,
            model=node.upstream_model or node.name,
            api_key_env=env,
            api_key_set=None if env is None else bool(os.environ.get(env)),
            problem=why_uncallable(node.name, node, LLM, settings),
        )


class LLMIn(Strict):
    name: LLMName
    description: Description = ""
    input_price: Price = Field(description="USD per 1M input tokens (at most 10,000)")
    output_price: Price = Field(description="USD per 1M output tokens (at most 10,000)")
    size_b: float | None = Field(None, ge=0, allow_inf_nan=False, description="parameters, billions")
    outcomes: list[OutcomeIn] | None = Field(None, description="observed outcomes of it on stored queries")
    upstream: UpstreamIn | None = Field(
        None, description="how POST /v1/chat/completions calls it; not part of the registration's identity"
    )

    def node(self) -> LLMNode:
        up = self.upstream
        return LLMNode(
            self.name,
            self.description,
            self.input_price,
            self.output_price,
            self.size_b,
            base_url=up.base_url if up else None,
            upstream_model=up.model if up else None,
            api_key_env=up.api_key_env if up else None,
        )


class LLMPatch(Strict):
    upstream: UpstreamIn | None = Field(description="the new upstream; null removes it")


class LLMOut(BaseModel):
    name: str
    description: str
    input_price: float
    output_price: float
    size_b: float | None
    routable: bool = Field(description="the scorer routes to it now")
    proxied: bool = Field(
        description="it has an upstream configured (GET /v1/models/{name} says whether the proxy can call it now)"
    )
    upstream: UpstreamOut | None = Field(
        None,
        description="how the proxy calls it, shown to callers that send the API key (null: it has no upstream, or "
        "the request did not carry the key: an upstream's address and key variable are the operator's)",
    )

    @classmethod
    def of(cls, node: LLMNode, routable: bool, operator: Settings | None) -> LLMOut:
        """``operator``: the service's settings when the request carries the API key, so the upstream is shown;
        None otherwise."""
        return cls(
            name=node.name,
            description=node.description,
            input_price=node.input_price,
            output_price=node.output_price,
            size_b=node.size_b,
            routable=routable,
            proxied=node.base_url is not None,
            upstream=UpstreamOut.of(node, operator) if operator is not None else None,
        )


class LLMRegistered(LLMOut):
    created: bool = Field(description="false when the same LLM was already registered (idempotent)")
    outcomes_written: int
    note: str | None = Field(None, description="why it is not routable yet, or what it lacks to be routed well")


class LearningOut(BaseModel):
    """What the running scorer has learned of a candidate (null when it is not routable)."""

    outcomes: int = Field(description="behind its prediction: trained, registered, or posted on stored queries")
    learned_online: int = Field(description="outcomes learned online since the checkpoint (other queries)")
    quiz_outcomes_left: int = Field(description="before exploring stops sending it random queries (0: known or done)")
    cost_input_factor: float = Field(
        description="the learned multiplier of its computed input cost (input tokens × its, or an agent's LLM's, "
        "price): ~1 for an LLM billed as priced, several for an agent making several calls; learned from the costs "
        "its training saw, and for a candidate registered since also from costs posted since (on queries outside "
        "the training's, the latest 2,000; 1 before any, shrunk towards 1 while they are few)"
    )
    cost_output_factor: float = Field(
        description="the same of its computed output cost (512 tokens × price): equal to the input's unless its "
        "observed costs showed the prompt and the answer scale apart (an LLM answering in ~60 tokens: ~0.12)"
    )


class LLMDetail(LLMOut):
    outcomes: int = Field(description="stored outcome edges of it")
    learning: LearningOut | None = Field(None, description="what the running scorer has learned of it")


class LLMList(BaseModel):
    data: list[LLMOut]
    count: int = Field(description="LLMs in the store (all pages)")


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
        "over tasks by traffic × its uncertainty there, a seeded random sample within a task; queries it already "
        "answered are skipped"
    )


# ---- agents -------------------------------------------------------------------------------------------------
class AgentIn(Strict):
    name: LLMName
    llm: Name = Field(description="the registered LLM it runs on (BACKED_BY); it is priced as that LLM")
    description: Description = ""
    strategy: ShortText = Field("", description="framework or strategy: ReAct, CoT, tool use, ...")
    outcomes: list[OutcomeIn] | None = Field(None, description="observed outcomes of it on stored queries")

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
    note: str | None = Field(None, description="why it is not routable yet, or what it lacks to be routed well")


class AgentDetail(AgentOut):
    outcomes: int = Field(description="stored outcome edges of it (HANDLED_BY)")
    learning: LearningOut | None = Field(None, description="what the running scorer has learned of it")


class AgentList(BaseModel):
    data: list[AgentOut]
    count: int = Field(description="agents in the store (all pages)")
