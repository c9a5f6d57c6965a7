"""Serve the Chalice app over real HTTP, in this process, on 127.0.0.1 and a free port.

    from tests.support.live_server import live_server

    with live_server(app) as base_url:          # e.g. "http://127.0.0.1:40123"
        requests.get(base_url + "/api/v2/openapi.json")

It is chalice's own local server (what ``chalice local`` runs: API Gateway's routing, 415s and
405s included), with the stage ``local`` configuration from ``.chalice/config.json``, served from a
daemon thread and shut down on exit. The AWS endpoint and ``BROKER_*`` variables must already be in
``os.environ`` (the ``aws_endpoint`` fixture does that); the stage's environment variables are only
filled in where the environment does not set them, and put back on exit.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
STAGE = "local"

_class_lock = threading.Lock()
_swapped: dict[int, list] = {}  # id(app) -> [original class, number of live servers]


def chalice_config(app, stage: str = STAGE, project_dir: Path = ROOT):
    """A ``chalice.config.Config`` for ``stage`` from ``.chalice/config.json`` (empty when absent)."""
    from chalice.config import Config

    config_file = project_dir / ".chalice" / "config.json"
    from_disk = json.loads(config_file.read_text()) if config_file.is_file() else {}
    return Config(
        chalice_stage=stage,
        user_provided_params={"chalice_app": app},
        config_from_disk=from_disk,
        default_params={"project_dir": str(project_dir), "api_gateway_stage": "api",
                        "autogen_policy": True},
    )


def _quiet_handler():
    from chalice.local import ChaliceRequestHandler

    class QuietHandler(ChaliceRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
            pass

    return QuietHandler


def _make_server(app, config, host: str):
    """chalice.local.create_local_server, safe to call again while another server runs.

    create_local_server turns the app into a ``LocalChalice`` (thread-local ``current_request``,
    needed by a threaded server) by swapping its class; a second swap would make the class its own
    base, so it happens once per app and is undone when the last server stops.
    """
    from chalice.local import LocalChalice, LocalDevServer, ThreadedHTTPServer, create_local_server

    # chalice's server queues 5 pending connections; the concurrency tests open 50 at once.
    ThreadedHTTPServer.request_queue_size = 128

    with _class_lock:
        entry = _swapped.get(id(app))
        if entry is None:
            original = app.__class__
            if isinstance(app, LocalChalice):
                server = LocalDevServer(app, config, host, 0)
            else:
                server = create_local_server(app, config, host, 0)
            _swapped[id(app)] = [original, 1]
        else:
            server = LocalDevServer(app, config, host, 0)
            entry[1] += 1
    server.server.RequestHandlerClass = functools.partial(_quiet_handler(), app_object=app,
                                                          config=config)
    return server


def _release(app) -> None:
    with _class_lock:
        entry = _swapped.get(id(app))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _swapped[id(app)]
            app.__class__ = entry[0]


@contextlib.contextmanager
def _stage_environment(config) -> Iterator[None]:
    added = [k for k in config.environment_variables if k not in os.environ]
    for key in added:
        os.environ[key] = str(config.environment_variables[key])
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def live_server(app, *, host: str = "127.0.0.1", stage: str = STAGE) -> Iterator[str]:
    """Run ``app`` over HTTP until the block exits; yields its base URL (no trailing slash)."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("the live server listens on loopback only")
    config = chalice_config(app, stage)
    with _stage_environment(config):
        server = _make_server(app, config, host)
        http_server = server.server
        port = http_server.server_address[1]
        thread = threading.Thread(target=http_server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"chalice-live-{port}", daemon=True)
        thread.start()
        try:
            yield f"http://{host}:{port}"
        finally:
            http_server.shutdown()
            http_server.server_close()
            thread.join(timeout=5)
            _release(app)
