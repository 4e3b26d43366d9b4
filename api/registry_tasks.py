"""Registering and deleting tasks: a mixin of :class:`~api.registry.CandidateRegistry`, whose lock serialises them
with every other graph write the scorer must follow.

A task registered after the serving checkpoint was trained is stored at once (the next training learns it); a task
deleted while the checkpoint still knows it is refused as a route's task from then on (``ServiceState.deleted_tasks``,
read by :meth:`~api.state.ServiceState.check_task`), and still after it is registered again with another description
(until a retrain). Deleting a task that stored queries belong to is refused (409):
the store would keep them pointing at a task that no longer exists (``GraphStore.queries_in_task`` counts them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import HTTPException, status

from graph_store import TASK, ConflictError, GraphBatch, GraphStore, Task
from graph_store.changes import TASK_DELETED, TASK_REGISTERED, Change

if TYPE_CHECKING:
    import threading

    from api.state import ServiceState


class RegistryTasks:
    """The task methods of :class:`~api.registry.CandidateRegistry`."""

    if TYPE_CHECKING:  # provided by CandidateRegistry
        state: ServiceState
        lock: threading.Lock

        def change(self, kind: str, key: str = "", payload: dict[str, Any] | None = None) -> Change: ...

    def register_task(self, node: Task) -> bool:
        """Store a task (True) or find it stored with the same description (False, idempotent); 409 if stored with
        another one."""
        store = self.state.get_store()
        with self.lock:
            if self._task_stored(store, node):
                return False
            redescribed = self._redescribed(node.name, node.description)  # before the write: it embeds a text
            try:
                store.write(GraphBatch(tasks=[node]), change=self.change(TASK_REGISTERED, node.name), new=[node])
            except ConflictError:  # registered by another writer since the check: the same description is done
                if self._task_stored(store, node):
                    return False
                raise
            self._back(node.name, redescribed)  # back again: the checkpoint may still know it
            return True

    @staticmethod
    def _task_stored(store: GraphStore, node: Task) -> bool:
        """Whether the task is stored with this description; a 409 if with another one."""
        existing = store.get_nodes(TASK, [node.name]).get(node.name)
        if existing is None:
            return False
        assert isinstance(existing, Task)
        if existing.description != node.description:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"task {node.name!r} is already registered with another description: give this one another "
                f"name, or DELETE /v1/tasks/{quote(node.name, safe='')} first (only while no stored query "
                "belongs to it)",
            )
        return True

    def delete_task(self, name: str) -> None:
        """Delete a task no stored query belongs to (404 if none, 409 if queries do)."""
        store = self.state.get_store()
        with self.lock:  # no query can be added to it between the count and the delete
            store.get_node(TASK, name)
            n = store.queries_in_task(name)
            if n:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"task {name!r} has {n:,} stored quer{'y' if n == 1 else 'ies'}: a task is deleted only when "
                    "no stored query belongs to it (queries are kept: they are the router's neighbours and outcomes)",
                )
            store.delete_node(TASK, name, change=self.change(TASK_DELETED, name))
            self.task_deleted(name)

    def task_registered(self, name: str) -> None:
        """A task (re-)registered by another replica or an import: a route may name it again if the checkpoint knows
        it with the description the store now holds (with another, what it learned is about another task)."""
        if name not in self.state.deleted_tasks:
            return
        node = self.state.get_store().get_nodes(TASK, [name]).get(name)
        if isinstance(node, Task):  # else deleted again since
            self._back(name, self._redescribed(name, node.description))

    def _redescribed(self, name: str, description: str) -> bool:
        """Whether the serving checkpoint was trained with task ``name`` under another description."""
        scorer = self.state.scorer
        return scorer is not None and name in self.state.deleted_tasks and bool(scorer.redescribed({name: description}))

    def _back(self, name: str, redescribed: bool) -> None:
        """Task ``name`` stored again: routable with it if the checkpoint knows it as stored, else refused with why."""
        if name in self.state.deleted_tasks:
            with self.state.lock.write():
                if redescribed:
                    self.state.redescribed_tasks.add(name)
                else:
                    self.state.deleted_tasks.discard(name)
                    self.state.redescribed_tasks.discard(name)

    def task_deleted(self, name: str) -> None:
        """A task deleted while the checkpoint still knows it: refused as a route's task from now on."""
        scorer = self.state.scorer
        if scorer is not None and name in scorer.tasks:
            with self.state.lock.write():
                self.state.deleted_tasks.add(name)
                self.state.redescribed_tasks.discard(name)
