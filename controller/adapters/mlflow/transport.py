"""HTTP to an MLflow tracking server: credentials, TLS and timeout from MLflow's own
environment variables (``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``; ``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``;
``MLFLOW_HTTP_REQUEST_TIMEOUT``, default 30 s; ``MLFLOW_WORKSPACE``, sent as the
``X-MLFLOW-WORKSPACE`` header), and requests whose errors are typed as the client
adapter's are: no answer, 408, 429 and 5xx are temporary; the rest permanent. Paged listings
follow ``next_page_token``. No mlflow import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import requests

from controller.adapters.mlflow.client import TRANSIENT_STATUS
from controller.core.errors import PermanentBackendError, TemporaryBackendError
from controller.core.secrets import redact_text, without_credentials

__all__ = ["MlflowHttp", "usable"]


#: Authentication this adapter does not speak (an MLflow auth plugin, AWS SigV4): the MLflow
#: client does, so such a tracking URI is left to it.
_CLIENT_ONLY_AUTH = ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4")


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1")


def usable(tracking_uri: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether this adapter can serve a tracking URI: a plain MLflow tracking server, with no
    authentication that only the MLflow client speaks, unless ``AGENTCTL_REGISTRY_CLIENT=mlflow``
    asks for the client."""
    env = os.environ if env is None else env
    if env.get("AGENTCTL_REGISTRY_CLIENT", "").lower() == "mlflow":
        return False
    if env.get("MLFLOW_TRACKING_AUTH") or _true(env.get("MLFLOW_TRACKING_AWS_SIGV4")):
        return False
    return tracking_uri.startswith(("http://", "https://"))


class MlflowHttp:
    """A session to an MLflow tracking server, configured as the MLflow client configures
    its own, and requests whose failures are typed (temporary or permanent)."""

    def __init__(self, tracking_uri: str, *, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.tracking_uri = tracking_uri
        #: How the server is named in messages: never with the URI's credentials.
        self.shown = without_credentials(tracking_uri)
        auth: Any = None
        headers = {"User-Agent": "agentctl"}
        # As the MLflow client: a username and a password, else a token.
        if env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD"):
            auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        elif env.get("MLFLOW_TRACKING_TOKEN"):
            headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        # As the MLflow client: a server with workspaces enabled scopes each request to one.
        #: The MLflow workspace requests are scoped to (None: the server's default, or none).
        self.workspace = (env.get("MLFLOW_WORKSPACE") or "").strip() or None
        if self.workspace:
            headers["X-MLFLOW-WORKSPACE"] = self.workspace
        verify: Any = True
        if _true(env.get("MLFLOW_TRACKING_INSECURE_TLS")):
            verify = False
        elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            verify = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        self._base = tracking_uri.rstrip("/") + "/api/2.0/mlflow/"
        self._timeout = float(env.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 30)
        self._http = requests.Session()
        self._http.headers.update(headers)
        self._http.auth = auth
        self._http.verify = verify
        self._http.cert = env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None
        self._http.trust_env = False  # no proxies from the environment: the URI says where
        # Room for every thread of a parallel apply (--parallelism) and the observation pair.
        pool = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=64)
        self._http.mount("http://", pool)
        self._http.mount("https://", pool)

    # -- requests ------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        operation: str,
        target: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        ok_codes: tuple[str, ...] = (),
        base: str | None = None,
    ) -> dict[str, Any] | None:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = self._http.request(
                method, (base or self._base) + path, params=query, json=body, timeout=self._timeout
            )
        except requests.exceptions.SSLError as exc:  # a certificate will not fix itself
            raise PermanentBackendError(
                f"{operation}: TLS with the MLflow server at {self.shown} failed ({exc})",
                operation=operation,
                target=target,
            ) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason = "timed out" if isinstance(exc, requests.Timeout) else "connection refused"
            if not isinstance(exc, requests.Timeout) and "refused" not in str(exc).lower():
                reason = str(exc)
            raise TemporaryBackendError(
                f"{operation}: the MLflow server at {self.shown} did not answer ({reason})",
                operation=operation,
                target=target,
            ) from exc
        except requests.RequestException as exc:  # a malformed URL, too many redirects, ...
            raise PermanentBackendError(
                f"{operation}: cannot ask the MLflow server at {self.shown}: {redact_text(str(exc))}",
                operation=operation,
                target=target,
            ) from exc
        data: dict[str, Any] = {}
        try:
            data = r.json() if r.content else {}
        except ValueError:
            data = {"message": r.text[:500]}
        if r.ok:
            return data
        code = str(data.get("error_code", ""))
        if code in ok_codes:
            return None
        text = data.get("message") or r.reason
        message = f"{operation} {target}: {text} ({code or r.status_code})"
        if r.status_code in TRANSIENT_STATUS:
            raise TemporaryBackendError(message, operation=operation, target=target)
        raise PermanentBackendError(message, operation=operation, target=target)

    def _get(self, path: str, operation: str, target: str, **params: Any) -> dict[str, Any]:
        found = self._request("GET", path, operation, target, params=params)
        assert found is not None
        return found

    def _pages(self, path: str, key: str, operation: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page = self._get(path, operation, self.shown, **params, page_token=token)
            items.extend(page.get(key) or [])
            token = page.get("next_page_token")
            if not token:
                return items

    def _post_pages(
        self, path: str, key: str, operation: str, body: Mapping[str, Any]
    ) -> list[Any]:
        items: list[Any] = []
        token = None
        while True:
            page = self._request(
                "POST", path, operation, self.tracking_uri, body={**body, "page_token": token}
            )
            assert page is not None
            items.extend(page.get(key) or [])
            token = page.get("next_page_token")
            if not token:
                return items
