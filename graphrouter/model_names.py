"""The model names the OpenAI-compatible proxy reads as a request to route, which no LLM may take."""

from __future__ import annotations

ROUTER_MODEL = "graphrouter"  # the proxy's model name that asks it to route (and graphrouter:<scenario>)


def is_router_model(name: str) -> bool:
    """Whether the proxy reads model ``name`` as a request to route (``graphrouter`` or ``graphrouter:<anything>``)."""
    return name == ROUTER_MODEL or name.startswith(ROUTER_MODEL + ":")


def reserved_name(name: str) -> str | None:
    """Why an LLM (or agent) may not take ``name`` (the proxy reads it as a request to route), or None if it may."""
    if is_router_model(name):
        return (
            f"{name!r} is reserved: model {ROUTER_MODEL!r} (or {ROUTER_MODEL}:<scenario>) asks the proxy to route; "
            "choose another name"
        )
    return None
