"""The few Kubernetes API calls the kubernetes provider makes, with errors translated once.

The official client finds the cluster the standard way: in a pod, its service
account (``KUBERNETES_SERVICE_HOST`` and the mounted token); elsewhere the
kubeconfig (``KUBECONFIG``, else ``~/.kube/config``) and its current context.

Objects travel as plain JSON dicts (``_preload_content=False``), as the API
reference writes them, rather than as the client's generated models: the
provider reads a handful of fields and need not follow the models' changes.

Errors: a refusal that retrying cannot cure (401, 403: RBAC; 404 on the
namespace; 422: an invalid pod) is a ``ConfigError`` of one line, the API
server's own message; anything else (5xx, 429, a refused connection, a
timeout) is ``Unavailable``, which the controller logs and retries next tick.
"""

from __future__ import annotations

import json
import os
from typing import Any

from gpufleet.errors import ConfigError, Unavailable

IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_TIMEOUT_S = (5.0, 30.0)  # connect, read: a tick must not hang on a dead API server
_FATAL = (400, 401, 403, 404, 422)


def _client() -> Any:
    try:
        import kubernetes
    except ImportError as exc:
        raise ConfigError("--provider kubernetes needs its extra: "
                          "pip install 'gpufleet[kubernetes]'") from exc
    return kubernetes


def connect() -> Any:
    """An ApiClient for the cluster this process is configured for."""
    kubernetes = _client()
    configuration = kubernetes.client.Configuration()
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(config_file=_kubeconfig(),
                                               client_configuration=configuration)
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise ConfigError(f"Kubernetes: no cluster configured (in-cluster or kubeconfig): "
                          f"{exc}") from exc
    # One try per call: the controller's next tick is the retry, and a tick must stay short.
    configuration.retries = 0
    return kubernetes.client.ApiClient(configuration)


def _kubeconfig() -> str | None:
    # Read now: the client reads KUBECONFIG once, when it is imported.
    return os.environ.get("KUBECONFIG") or None


def default_namespace() -> str:
    """The controller's own namespace in a pod, else the kubeconfig context's, else default."""
    try:
        with open(IN_CLUSTER_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip() or "default"
    except OSError:
        pass
    try:
        _, context = _client().config.list_kube_config_contexts(config_file=_kubeconfig())
        return str((context or {}).get("context", {}).get("namespace") or "default")
    except Exception:  # no kubeconfig: connect() says so, with the reason
        return "default"


class Api:
    """Pods of one namespace, and nodes: list, create, delete, patch, read."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.core = _client().client.CoreV1Api(api_client)
        self.namespace = namespace
        self.host = api_client.configuration.host

    def list_pods(self, selector: str) -> list[dict[str, Any]]:
        reply = self._call("list pods", self.core.list_namespaced_pod, self.namespace,
                           label_selector=selector)
        return list(reply.get("items") or [])

    def create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._call(f"create pod {pod['metadata']['name']}",
                                             self.core.create_namespaced_pod,
                                             self.namespace, pod)
        return created

    def delete_pod(self, name: str, *, grace_s: int) -> None:
        """Graceful: the pod's containers get SIGTERM, then grace_s before SIGKILL."""
        self._call(f"delete pod {name}", self.core.delete_namespaced_pod, name,
                   self.namespace, body={"gracePeriodSeconds": grace_s,
                                         "propagationPolicy": "Background"},
                   missing_ok=True)

    def annotate_pod(self, name: str, annotations: dict[str, str | None]) -> None:
        """A JSON merge patch: a None value removes the annotation."""
        self._call(f"annotate pod {name}", self.core.patch_namespaced_pod, name,
                   self.namespace, {"metadata": {"annotations": annotations}},
                   _content_type="application/merge-patch+json", missing_ok=True)

    def node(self, name: str) -> dict[str, Any] | None:
        """The node, or None where it is gone (reclaimed, scaled in)."""
        reply = self._call(f"read node {name}", self.core.read_node, name, missing_ok=True)
        return reply or None

    def _call(self, what: str, fn: Any, *args: Any, missing_ok: bool = False,
              **kwargs: Any) -> Any:
        kubernetes = _client()
        import urllib3

        try:
            response = fn(*args, _preload_content=False, _request_timeout=_TIMEOUT_S,
                          **kwargs)
        except kubernetes.client.ApiException as exc:
            if missing_ok and exc.status == 404 and "namespaces" not in _reason(exc):
                return {}
            message = f"Kubernetes: {what} in namespace {self.namespace}: {_reason(exc)}"
            if exc.status in _FATAL:
                raise ConfigError(message) from exc
            raise Unavailable(message) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"Kubernetes: {what}: API server {self.host} unreachable "
                              f"({type(exc).__name__})") from exc
        body = response.data
        return json.loads(body) if body else {}


def _reason(exc: Any) -> str:
    """The message of the Status object the API server answered with, on one line."""
    try:
        status = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    return " ".join(str(message or f"{exc.status} {exc.reason}").split())
