"""The OpenAI-compatible proxy: ``POST /v1/chat/completions``, ``GET /v1/models`` and ``POST /v1/feedback`` (see
:mod:`api.proxy`).

All need a proxy key (``Authorization: Bearer <GRAPHROUTER_PROXY_KEY>``, what an OpenAI client sends as its
``api_key``); feedback also takes the admin key. The chat body is read raw (at most
``GRAPHROUTER_PROXY_MAX_BODY_BYTES``) and passed on as it is: any OpenAI field the upstream knows is forwarded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api import model_list
from api.deps import FeedbackAuth, ProxyAuth, ProxyDep, SettingsDep, StoreDep
from api.proxy_models import FeedbackIn, FeedbackOut, ModelCard, ModelList
from api.upstream import read_body

router = APIRouter(prefix="/v1", tags=["proxy"])

_CHAT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model", "messages"],
                    "additionalProperties": True,
                    "properties": {
                        "model": {
                            "type": "string",
                            "description": "a candidate LLM's name, or graphrouter[:balance|:performance_first|"
                            ":cost_first] to route",
                        },
                        "messages": {"type": "array", "items": {"type": "object"}},
                        "stream": {"type": "boolean"},
                        "task": {"type": "string", "description": "routing only: the query's task"},
                        "weights": {"type": "object", "description": "routing only: as /v1/route"},
                        "budget": {"type": "number", "description": "routing only: as /v1/route"},
                        "candidates": {"type": "array", "items": {"type": "string"}},
                    },
                }
            }
        },
    }
}


@router.post(
    "/chat/completions",
    summary="OpenAI-compatible chat completion: routed (model 'graphrouter') or passed through, then recorded",
    openapi_extra=_CHAT_BODY,
    responses={
        400: {"description": "bad request, or no candidate with an upstream (the message names each and why)"},
        401: {"description": "missing or wrong proxy key, or none configured"},
        404: {"description": "model names no LLM"},
        413: {"description": "body over GRAPHROUTER_PROXY_MAX_BODY_BYTES"},
        429: {"description": "over the key's rate limit"},
        502: {"description": "every upstream tried failed"},
        503: {
            "description": "the LLM named, or every ranked LLM, cannot send its key (its variable unset or not allowed "
            "on the server: the message names each); or the store or the checkpoint is unavailable (only then with "
            "Retry-After)"
        },
    },
)
async def chat_completions(request: Request, proxy: ProxyDep, settings: SettingsDep, _key: ProxyAuth) -> Response:
    return await proxy.chat(await read_body(request, settings.proxy_max_body_bytes))


_MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong proxy key, or none configured"},
    429: {"description": "over the key's rate limit"},
}


@router.get(
    "/models",
    response_model=ModelList,
    summary="OpenAI-compatible model list: graphrouter (and graphrouter:<scenario>), then every LLM it can call",
    responses=_MODEL_ERRORS,
)
def list_models(_key: ProxyAuth, store: StoreDep, settings: SettingsDep) -> ModelList:  # the key first
    return model_list.models(store, settings)


@router.get(
    "/models/{model:path}",
    response_model=ModelCard,
    summary="OpenAI-compatible model lookup",
    responses={**_MODEL_ERRORS, 404: {"description": "no such model, or an LLM without a usable upstream (says why)"}},
)
def get_model(model: str, _key: ProxyAuth, store: StoreDep, settings: SettingsDep) -> ModelCard:
    return model_list.model(store, settings, model)


@router.post(
    "/feedback",
    response_model=FeedbackOut,
    summary="the effect of a proxied call: its pending outcome becomes an outcome the router learns from",
    responses={
        401: {"description": "missing or wrong proxy (or admin) key, or none configured"},
        404: {"description": "no pending outcome with that id"},
    },
)
def feedback(body: FeedbackIn, proxy: ProxyDep, _key: FeedbackAuth) -> FeedbackOut:
    return proxy.feedback(body)
