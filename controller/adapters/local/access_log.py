"""The model servers' logging: uvicorn's own configuration, less the ``/ping`` access lines.

``mlflow models serve`` runs ``uvicorn`` with the environment it was given, and uvicorn reads
its options from ``UVICORN_*`` variables (its CLI's ``auto_envvar_prefix``), so
``UVICORN_LOG_CONFIG`` names a JSON file of ours: uvicorn 0.54's ``LOGGING_CONFIG`` with a
filter on the access handler that drops the supervisor's readiness pings (four a second per
server) and keeps every other request, as the shadow test reads them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from controller.adapters.local.rundir import private_open

__all__ = ["ENV", "PingFilter", "config", "write_config"]

#: The variable uvicorn reads its --log-config from.
ENV = "UVICORN_LOG_CONFIG"
_PATHS = {"/ping", "/health"}


class PingFilter(logging.Filter):
    """Drops uvicorn access records of ``GET /ping`` and ``/health`` (with or without a query);
    uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with (client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            return args[2].split("?", 1)[0] not in _PATHS
        return True


def config() -> dict[str, Any]:
    """uvicorn's default logging configuration with :class:`PingFilter` on the access lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"no_pings": {"()": f"{__name__}.PingFilter"}},
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": False,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
                "use_colors": False,
            },
        },
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["no_pings"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def write_config(directory: Path) -> Path:
    """The configuration as a JSON file in ``directory`` (written atomically, 0600)."""
    path = directory / "uvicorn-logging.json"
    tmp = directory / f".uvicorn-logging.json.{os.getpid()}.tmp"
    with private_open(tmp, "w") as fh:
        json.dump(config(), fh, indent=2)
    os.replace(tmp, path)
    return path
