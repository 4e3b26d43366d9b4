"""Routers behind one interface: baselines and the GNN, looked up by name in ``ROUTERS``."""

from graphrouter.routers import bandits as _bandits  # noqa: F401
from graphrouter.routers import baselines as _baselines  # noqa: F401 - registers the baselines
from graphrouter.routers import gnn as _gnn  # noqa: F401
from graphrouter.routers.base import ROUTERS, Router, build_router, register
from graphrouter.world import QueryFeatures, World

__all__ = ["ROUTERS", "QueryFeatures", "Router", "World", "build_router", "register"]
