"""Model names with a meaning of their own, which no LLM or agent may take: the proxy reads them as a request to
route, or a GET of them would read as a probe set."""

from __future__ import annotations

ROUTER_MODEL = "graphrouter"  # the proxy's model name that asks it to route (and graphrouter:<scenario>)


def is_router_model(name: str) -> bool:
    """Whether the proxy reads model ``name`` as a request to route (``graphrouter`` or ``graphrouter:<anything>``)."""
    return name == ROUTER_MODEL or name.startswith(ROUTER_MODEL + ":")


PROBES_SUFFIX = "/probes"  # GET /v1/llms/x/probes is the probe set of x


def reserved_name(name: str) -> str | None:
    """Why an LLM (or agent) may not take ``name``, or None if it may: the proxy reads it as a request to route, or it
    ends in ``/probes`` (a GET of it would read as another candidate's probe set)."""
    if is_router_model(name):
        return (
            f"{name!r} is reserved: model {ROUTER_MODEL!r} (or {ROUTER_MODEL}:<scenario>) asks the proxy to route; "
            "choose another name"
        )
    if name.endswith(PROBES_SUFFIX):
        base = name[: -len(PROBES_SUFFIX)]
        return f"{name!r} is reserved: a GET of it would read as the probe set of {base!r}; choose another name"
    return None
