"""The Kubernetes API as plain JSON, with typed errors; where a configuration comes from.

Requests go through the kubernetes client's ApiClient (kubeconfig or in-cluster configuration,
its TLS and auth) as plain JSON, with no discovery round-trips. Errors become typed
BackendErrors: 429 / 5xx / no answer are temporary, the rest permanent.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from controller.core.errors import (
    BackendError,
    InvalidInput,
    PermanentBackendError,
    TemporaryBackendError,
)

__all__ = ["Conflict", "Forbidden", "KubeApi", "NotFound", "connect", "micro_time"]

_IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def micro_time(now: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC), as Leases and Events take."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeApi:
    """JSON over the kubernetes client's ApiClient. Errors become typed BackendErrors:
    429 / 5xx / no answer are temporary, the rest permanent. ``requests`` counts calls made."""

    def __init__(self, api_client: k8s_client.ApiClient, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self.requests = 0
        self.server = str(api_client.configuration.host)

    def request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        self.requests += 1
        what = f"{method} {path}"
        try:
            response = self.api_client.call_api(
                serialized[0],
                serialized[1],
                header_params=serialized[2],
                body=serialized[3],
                _request_timeout=self.timeout,
            )
            raw = response.read()
        except ApiException as exc:  # raised by the client for some failures before a status
            raise _error(exc.status or 0, exc.body or str(exc), what) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryBackendError(
                f"the Kubernetes API server at {self.server} did not answer: {exc}",
                operation=what,
            ) from exc
        if not 200 <= response.status < 300:
            raise _error(response.status, raw.decode(errors="replace"), what)
        return json.loads(raw) if raw else None


class Forbidden(PermanentBackendError):
    """RBAC denied the request."""


class NotFound(PermanentBackendError):
    """The object, its namespace or its API does not exist."""


class Conflict(PermanentBackendError):
    """The object exists already, or changed since it was read (HTTP 409)."""


def _error(status: int, body: str, what: str) -> BackendError:
    message = body
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("message", body)
    text = f"{what}: HTTP {status}: {message}"
    if status == 403:
        return Forbidden(text, operation=what)
    if status == 404:
        return NotFound(text, operation=what)
    if status == 409:
        return Conflict(text, operation=what)
    if status == 429 or status >= 500 or status == 0:
        return TemporaryBackendError(text, operation=what)
    return PermanentBackendError(text, operation=what)


def connect(
    kubeconfig: str | None = None, context: str | None = None, timeout: float = 30.0
) -> tuple[KubeApi, str]:
    """An API client from a kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ~/.kube/config; its
    ``--context``) or, in a pod with neither given, the in-cluster configuration; and the
    namespace that configuration names (``default`` if none)."""
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            k8s_config.load_incluster_config(client_configuration=configuration)
            try:
                with open(_IN_CLUSTER_NAMESPACE) as fh:
                    namespace = fh.read().strip() or "default"
            except OSError:
                namespace = "default"
        else:
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            _, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
            if context is not None:
                contexts, _ = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
                active = next(c for c in contexts if c["name"] == context)
            namespace = active.get("context", {}).get("namespace") or "default"
    except (k8s_config.ConfigException, OSError, StopIteration) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise InvalidInput.of(
            f"cannot load the Kubernetes configuration ({where}"
            f"{', context ' + context if context else ''}): {exc}",
            field="--kubeconfig",
        ) from exc
    configuration.retries = 0  # the retry policy retries, with backoff
    return KubeApi(k8s_client.ApiClient(configuration), timeout), namespace
