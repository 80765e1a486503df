"""A stand-in model server as an ASGI app, for the real ``uvicorn`` that ``mlflow models
serve`` runs: ``uvicorn tests.support.asgi_stand_in:app`` answers ``GET /ping`` and
``POST /invocations`` as MLflow's scoring server does, with uvicorn's own logging."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    known = {("GET", "/ping"): b"\n", ("POST", "/invocations"): b'{"predictions": []}'}
    body = known.get((scope["method"], scope["path"]))
    await send(
        {
            "type": "http.response.start",
            "status": 200 if body is not None else 404,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body or b"{}"})
