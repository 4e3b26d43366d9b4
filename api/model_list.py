"""OpenAI's model list (``GET /v1/models``): what a chat call's ``model`` may name, for OpenAI clients and chat UIs
that ask before they call. The router first (``graphrouter``, and one alias per scenario), then every stored LLM the
proxy can call (an upstream, its key's variable set; api/upstream.py :func:`~api.upstream.why_uncallable`). An LLM
whose name is a router id is left out: that model id routes.
"""

from __future__ import annotations

from fastapi import status

from api.proxy_models import ModelCard, ModelList
from api.settings import Settings
from api.upstream import callable_llms, client_error, why_uncallable
from graph_store import LLM, GraphStore, LLMNode
from graphrouter.model_names import ROUTER_MODEL, is_router_model
from graphrouter.rewards import SCENARIOS


def models(store: GraphStore, settings: Settings) -> ModelList:
    cards = [ModelCard(id=ROUTER_MODEL, owned_by=ROUTER_MODEL)]
    cards += [ModelCard(id=f"{ROUTER_MODEL}:{s}", owned_by=ROUTER_MODEL) for s in SCENARIOS]
    usable = [n for n in callable_llms(store, settings) if not is_router_model(n)]
    return ModelList(data=cards + [ModelCard(id=n, owned_by="upstream") for n in usable])


def model(store: GraphStore, settings: Settings, name: str) -> ModelCard:
    """One of :func:`models`, or a 404 saying why it is not there."""
    for card in models(store, settings).data:
        if card.id == name:
            return card
    node = store.get_node(LLM, name) if store.has_node(LLM, name) else None
    if not isinstance(node, LLMNode):
        raise client_error(
            status.HTTP_404_NOT_FOUND, f"model: no LLM named {name!r}; GET /v1/models lists what can be called"
        )
    raise client_error(
        status.HTTP_404_NOT_FOUND, f"model: {name!r} cannot be called: {why_uncallable(name, node, LLM, settings)}"
    )
