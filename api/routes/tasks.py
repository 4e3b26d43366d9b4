"""Tasks: register, list, inspect, remove. Writes need the API key.

A task registered after the serving checkpoint was trained is stored at once (queries can be added to it, e.g.
with ``POST /v1/outcomes``, and the next training learns it), but the scorer cannot use it yet: a route naming it
gets a 400 saying it needs a retrain (``POST /v1/train``), rather than being mapped silently to an inferred task,
because a client that names a task expects it to be used; it can omit ``task`` to have one inferred.

Deleting a task that stored queries belong to is refused with 409: the store would keep those queries pointing at
a task that no longer exists (its ``delete_node`` drops only the ``OF_TASK`` edges), and the next training would
silently lose their task. A task without queries is deleted; if the serving checkpoint was trained with it,
routes naming it are refused from then on (and the checkpoint still loads after a restart).

The store has no query-by-task index in its interface, so counting a task's queries (``GET /v1/tasks/{name}``,
``DELETE``) scans the stored queries page by page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from api.deps import RegistryDep, StateDep, StoreDep, WriteAuth
from api.errors import AUTH_RESPONSES
from api.models import Deleted, TaskDetail, TaskIn, TaskList, TaskOut, TaskRegistered
from api.state import ServiceState
from graph_store import MAX_PAGE_INDEX, QUERY, TASK, GraphBatch, GraphStore, Task
from graph_store import Query as QueryNode
from graph_store.changes import TASK_DELETED, TASK_REGISTERED

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

_AUTH = AUTH_RESPONSES
_PAGE = 5_000


def queries_of_task(store: GraphStore, task: str) -> int:
    """How many stored queries belong to ``task`` (a scan: the store interface has no index by task)."""
    n, offset = 0, 0
    while True:
        page = store.list_nodes(QUERY, limit=_PAGE, offset=offset)
        n += sum(1 for q in page if isinstance(q, QueryNode) and q.task == task)
        if len(page) < _PAGE:
            return n
        offset += _PAGE


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
    body: TaskIn, response: Response, state: StateDep, registry: RegistryDep, store: StoreDep, _auth: WriteAuth
) -> TaskRegistered:
    node = body.node()
    with registry.lock:
        created = not store.has_node(TASK, node.name)
        if not created:
            existing = store.get_node(TASK, node.name)
            assert isinstance(existing, Task)
            if existing.description != node.description:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"task {node.name!r} is already registered with another description",
                )
            response.status_code = status.HTTP_200_OK
        else:
            store.write(GraphBatch(tasks=[node]), change=registry.change(TASK_REGISTERED, node.name))
            registry.task_registered(node.name)  # back again: the checkpoint still knows it
    trained = _trained(state, node.name)
    note = None
    if not trained:
        note = (
            "stored; /v1/route accepts it as task after the next training (POST /v1/train); until then omit task "
            "to have one inferred"
        )
    return TaskRegistered(**TaskOut.of(node, trained).model_dump(), created=created, note=note)


@router.get("", response_model=TaskList, summary="list the stored tasks, by name")
def list_tasks(
    state: StateDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_PAGE_INDEX)] = 0,
) -> TaskList:
    nodes = [n for n in store.list_nodes(TASK, limit=limit, offset=offset) if isinstance(n, Task)]
    return TaskList(data=[TaskOut.of(n, _trained(state, n.key)) for n in nodes], count=store.counts()[TASK])


@router.get("/{name:path}", response_model=TaskDetail, responses={404: {"description": "no such task"}})
def get_task(name: str, state: StateDep, store: StoreDep) -> TaskDetail:
    node = store.get_node(TASK, name)
    assert isinstance(node, Task)
    return TaskDetail(**TaskOut.of(node, _trained(state, name)).model_dump(), queries=queries_of_task(store, name))


@router.delete(
    "/{name:path}",
    response_model=Deleted,
    response_model_exclude_none=True,  # a task has no outcomes of its own
    summary="remove a task that no stored query belongs to",
    responses={**_AUTH, 404: {"description": "no such task"}, 409: {"description": "stored queries belong to it"}},
)
def delete_task(name: str, state: StateDep, registry: RegistryDep, store: StoreDep, _auth: WriteAuth) -> Deleted:
    with registry.lock:  # no query can be added to it between the count and the delete
        store.get_node(TASK, name)
        n = queries_of_task(store, name)
        if n:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"task {name!r} has {n:,} stored queries; deleting it would leave them without a task",
            )
        store.delete_node(TASK, name, change=registry.change(TASK_DELETED, name))
        registry.task_deleted(name)
    return Deleted(name=name)
