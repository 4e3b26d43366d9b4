"""Tasks: register, list, inspect, remove. Writes need the API key.

A task registered after the serving checkpoint was trained is stored at once (queries can be added to it, e.g.
with ``POST /v1/outcomes``, and the next training learns it), but the scorer cannot use it yet: a route naming it
gets a 400 saying it needs a retrain (``POST /v1/train``), rather than being mapped silently to an inferred task,
because a client that names a task expects it to be used; it can omit ``task`` to have one inferred.

Deleting a task that stored queries belong to is refused with 409: the store would keep those queries pointing at
a task that no longer exists (its ``delete_node`` drops only the ``OF_TASK`` edges), and the next training would
silently lose their task. A task without queries is deleted; if the serving checkpoint was trained with it,
routes naming it are refused from then on (and the checkpoint still loads after a restart).

The writes and the query count are the registry's (api/registry_tasks.py), under its lock.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import RegistryDep, StateDep, StoreDep, WriteAuth
from api.errors import AUTH_RESPONSES
from api.models import Deleted, TaskDetail, TaskIn, TaskList, TaskOut, TaskRegistered
from api.state import ServiceState
from graph_store import MAX_PAGE_INDEX, TASK, Task

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

_AUTH = AUTH_RESPONSES


def _trained(state: ServiceState, name: str) -> bool:
    scorer = state.scorer
    return scorer is not None and name in scorer.tasks and name not in state.deleted_tasks


@router.post(
    "",
    response_model=TaskRegistered,
    status_code=status.HTTP_201_CREATED,
    summary="register a task; the next training learns it",
    responses={
        **_AUTH,
        200: {"model": TaskRegistered, "description": "already registered with the same data (idempotent)"},
        409: {"description": "a task of that name is registered with another description"},
    },
)
def register_task(
    body: TaskIn, response: Response, state: StateDep, registry: RegistryDep, _auth: WriteAuth
) -> TaskRegistered:
    node = body.node()
    created = registry.register_task(node)
    if not created:
        response.status_code = status.HTTP_200_OK
    trained = _trained(state, node.name)
    note = None
    if not trained:
        note = (
            "stored; /v1/route accepts it as task after the next training (POST /v1/train); until then omit task "
            "to have one inferred"
        )
    return TaskRegistered(**TaskOut.of(node, trained).model_dump(), created=created, note=note)


@router.get("", response_model=TaskList, summary="list the stored tasks, by name")
@router.get("/", response_model=TaskList, include_in_schema=False)  # not "no task named ''"
def list_tasks(
    state: StateDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_INDEX)] = 0,
) -> TaskList:
    nodes = [n for n in store.list_nodes(TASK, limit=limit, offset=offset) if isinstance(n, Task)]
    return TaskList(data=[TaskOut.of(n, _trained(state, n.key)) for n in nodes], count=store.count_nodes(TASK))


@router.get("/{name:path}", response_model=TaskDetail, responses={404: {"description": "no such task"}})
def get_task(name: str, state: StateDep, store: StoreDep) -> TaskDetail:
    node = store.get_node(TASK, name)
    assert isinstance(node, Task)
    return TaskDetail(**TaskOut.of(node, _trained(state, name)).model_dump(), queries=store.queries_in_task(name))


@router.delete(
    "/{name:path}",
    response_model=Deleted,
    response_model_exclude_none=True,  # a task has no outcomes of its own
    summary="remove a task that no stored query belongs to",
    responses={**_AUTH, 404: {"description": "no such task"}, 409: {"description": "stored queries belong to it"}},
)
def delete_task(name: str, registry: RegistryDep, _auth: WriteAuth) -> Deleted:
    registry.delete_task(name)
    return Deleted(name=name)
