"""Retraining: ``POST /v1/train`` (needs the API key) starts it in the background; ``GET /v1/train`` reports on it.

See ``api/training.py`` for what a training does and how the new checkpoint is swapped in. A second ``POST`` while
one runs is a 409; the store being down is a 503.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, status

from api.deps import StateDep, TrainerDep, WriteAuth
from api.models import TrainStatusOut
from api.state import ServiceState
from api.training import TrainConfigError, Trainer
from api.types import Strict

router = APIRouter(prefix="/v1/train", tags=["train"])


def _out(state: ServiceState, trainer: Trainer) -> TrainStatusOut:
    s = trainer.status
    scorer = state.scorer
    return TrainStatusOut(
        status=s.status,  # type: ignore[arg-type]
        router=s.router,
        params=s.params,
        started_at=s.started_at,
        finished_at=s.finished_at,
        seconds=s.seconds,
        checkpoint=s.checkpoint,
        queries=s.queries,
        candidates=s.candidates,
        error=s.error,
        serving=scorer.checkpoint.version if scorer is not None else None,
    )


class NoBody(Strict):
    """``POST /v1/train`` takes no fields: the router and its parameters are the server's
    (``GRAPHROUTER_TRAIN_ROUTER``, ``GRAPHROUTER_TRAIN_PARAMS``); a body that names any is a 422, not ignored."""


@router.post(
    "",
    response_model=TrainStatusOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="retrain on the whole stored graph in the background; the new checkpoint is swapped in when done",
    responses={
        401: {"description": "missing or wrong API key, or no key configured"},
        409: {"description": "a training is already running"},
        500: {
            "description": "the server's GRAPHROUTER_TRAIN_ROUTER / GRAPHROUTER_TRAIN_PARAMS are wrong, or its "
            "GRAPHROUTER_CHECKPOINT cannot be written"
        },
        503: {"description": "the store is unavailable"},
    },
)
def start_training(
    state: StateDep, trainer: TrainerDep, _auth: WriteAuth, body: Annotated[NoBody | None, Body()] = None
) -> TrainStatusOut:
    try:
        trainer.start()
    except TrainConfigError as exc:  # not the client's fault: the server is misconfigured
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from None
    return _out(state, trainer)


@router.get("", response_model=TrainStatusOut, summary="status of the last (or running) training")
def training_status(state: StateDep, trainer: TrainerDep) -> TrainStatusOut:
    return _out(state, trainer)
