"""The bodies of the OpenAI-compatible proxy's own endpoints (api/routes/chat.py): ``GET /v1/models`` and
``POST /v1/feedback``. The chat body itself is read raw and passed on (api/upstream.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.types import Strict


class ModelCard(BaseModel):
    """OpenAI's model object: what ``GET /v1/models`` lists for OpenAI clients that ask which models exist."""

    id: str = Field(description="'graphrouter' (routes; ':<scenario>' for a scenario) or a callable LLM's name")
    object: Literal["model"] = "model"
    created: int = Field(0, description="0: the service does not know when a model was made")
    owned_by: str = Field(description="'graphrouter' for the router, 'upstream' for an LLM it forwards to")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class FeedbackIn(Strict):
    id: str = Field(min_length=1, max_length=200, description="the chat completion's id (its `id` field)")
    effect: float = Field(ge=0, le=1, allow_inf_nan=False, description="how good the answer was, in [0, 1]")


class FeedbackOut(BaseModel):
    id: str
    query_id: str
    candidate: str
    effect: float
    cost: float = Field(
        description="USD recorded for the stored query, from the upstream's usage and the candidate's prices: the "
        "output, and the input times the stored query text's share of the call's prompt (the bill is the usage)"
    )
    applied_to_scorer: bool = Field(description="the serving scorer uses it now (else: from the next training)")
