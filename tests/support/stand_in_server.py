"""A stand-in for `mlflow models serve` in daemon tests: answers /ping and /invocations on
127.0.0.1, naming its model and version; ``--delay`` seconds pass before it listens, and
``--fail`` makes it exit at once, as a model that cannot load does; with ``--slow-ping S``, once
it has had an invocation each /ping takes S seconds while invocations are still answered, as an
overloaded server's pings queue behind its requests; ``--answer-delay`` slows each invocation."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("version", type=int)
    parser.add_argument("port", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--slow-ping", type=float, default=0.0)
    parser.add_argument("--answer-delay", type=float, default=0.0)
    args = parser.parse_args()
    if args.fail:
        print("cannot load the model", file=sys.stderr)
        sys.exit(1)
    time.sleep(args.delay)

    busy = asyncio.Event()

    async def ping(_request: web.Request) -> web.Response:
        if busy.is_set():
            await asyncio.sleep(args.slow_ping)
        return web.Response(text="\n")

    async def invocations(_request: web.Request) -> web.Response:
        busy.set()
        await asyncio.sleep(args.answer_delay)
        return web.json_response({"model": args.model, "version": args.version})

    app = web.Application()
    app.router.add_get("/ping", ping)
    app.router.add_post("/invocations", invocations)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
