"""The playground's web server: Starlette routes over :mod:`.api`, served by uvicorn.

``GET /`` is the page and ``/static/...`` its scripts and styles (the third-party ones, built
from the npm registry by ``make build``, under ``static/vendor``). ``GET /api/catalog`` and
``POST /api/{surface,paths,ewa,schedules,batch}`` answer JSON; a request the playground refuses
gets status 400 and ``{"error": "one line"}``.

The server binds 127.0.0.1 unless told otherwise, and stops when :func:`serve` returns (Ctrl-C):
uvicorn runs in the calling thread, and the computations in its worker threads finish within
the caps of :data:`.api.LIMITS`.
"""

from __future__ import annotations

import gc
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .api import LIMITS, BadRequest, batch_sizes, catalog, ewa, paths, schedules, surface

__all__ = [
    "STATIC",
    "VENDOR_FILES",
    "create_app",
    "listening_socket",
    "missing_assets",
    "running",
    "serve",
    "server",
]

STATIC = Path(__file__).parent / "static"

#: The page's third-party files, copied from the npm registry's packages at build time.
VENDOR_FILES = (
    "vendor/plotly-cartesian.min.js",
    "vendor/katex/katex.min.js",
    "vendor/katex/katex.min.css",
)


def missing_assets() -> list[str]:
    """The vendored files the page needs that are not there (built by ``make build``)."""
    return [name for name in VENDOR_FILES if not (STATIC / name).is_file()]


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: they become null (a diverged value, a missing gap)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def create_app() -> Any:
    """The Starlette application (the tests drive it with its TestClient)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def reply(value: Any, status: int = 200) -> Response:
        body = json.dumps(_finite(value), separators=(",", ":"), allow_nan=False)
        return Response(body, status_code=status, media_type="application/json")

    def refuse(message: str) -> Response:
        return reply({"error": message}, 400)

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and (
            not declared.isdigit() or int(declared) > LIMITS["body_bytes"]
        ):
            raise BadRequest(f"the request body is over {LIMITS['body_bytes'] // 1024} KB")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > LIMITS["body_bytes"]:
                raise BadRequest(f"the request body is over {LIMITS['body_bytes'] // 1024} KB")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks) or b"{}")
        except (UnicodeDecodeError, ValueError) as error:  # (a number of 5,000 digits too)
            raise BadRequest(f"the request body is not JSON ({error})") from None
        except RecursionError:
            raise BadRequest("the request body is JSON nested too deeply") from None

    def endpoint(compute: Callable[[Any], Any]) -> Callable:
        async def answer(request: Request) -> Response:
            try:
                body = await read_json(request)
                return reply(await run_in_threadpool(compute, body))
            except BadRequest as error:
                return refuse(" ".join(str(error).split()))

        return answer

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def get_catalog(request: Request) -> Response:
        return reply(catalog())

    async def not_found(request: Request, exc: Exception) -> Response:
        return reply({"error": f"no such page: {request.url.path}"}, 404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return reply({"error": f"{request.method} is not allowed on {request.url.path}"}, 405)

    routes = [
        Route("/", page),
        Route("/api/catalog", get_catalog),
        *[
            Route(f"/api/{name}", endpoint(compute), methods=["POST"])
            for name, compute in (
                ("surface", surface),
                ("paths", paths),
                ("ewa", ewa),
                ("schedules", schedules),
                ("batch", batch_sizes),
            )
        ],
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})


def listening_socket(host: str, port: int) -> Any:
    """A socket bound to ``host:port`` and listening (``port=0``: a free one).

    Bound before the server starts so that a taken port is a clear error, the browser can be
    pointed at the real port, and connections made before uvicorn runs wait in the backlog.
    """
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


#: connections served at once; more get 503 (with the caps per request, this bounds memory)
MAX_CONNECTIONS = 32


def server(sock: Any) -> Any:
    """A uvicorn server of the playground for ``sock`` (``.run(sockets=[sock])`` serves)."""
    import uvicorn

    config = uvicorn.Config(
        create_app(),
        log_level="warning",
        lifespan="off",
        access_log=False,
        limit_concurrency=MAX_CONNECTIONS,
    )
    return uvicorn.Server(config)


@contextmanager
def running(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The playground served from a thread of this process while the block runs; yields its
    address (``http://127.0.0.1:PORT/``). For the tests, the benchmark and the screenshot: the
    thread is joined, and the socket closed, when the block ends."""
    sock = listening_socket(host, port)
    serving = server(sock)
    thread = threading.Thread(target=serving.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        while not serving.started and thread.is_alive():
            time.sleep(0.005)
        yield f"http://{host}:{sock.getsockname()[1]}/"
    finally:
        serving.should_exit = True
        thread.join()
        sock.close()


def serve(sock: Any) -> None:
    """Serve the playground on ``sock`` until Ctrl-C (uvicorn re-raises it on the way out).

    The objects alive by now (torch's and the lab's modules: most of the heap) are moved out
    of the garbage collector's sight first, as servers do: a full collection over them would
    otherwise cost tens of milliseconds in the middle of answers that take about a hundred.
    """
    gc.freeze()
    server(sock).run(sockets=[sock])
    # uvicorn returns only once a signal (Ctrl-C, SIGTERM) asked it to stop, and then raises
    # that signal again, which ends the process, unless it was ignored when the process
    # started (a child of a process that ignores Ctrl-C): stopped all the same, so say so.
    raise KeyboardInterrupt
