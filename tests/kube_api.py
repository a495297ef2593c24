"""A Kubernetes API server for tests: the handful of calls the kubernetes provider makes.

No cluster can run on these machines, so this stands in for the API server,
following the API reference (https://kubernetes.io/docs/reference/kubernetes-api/)
for the paths, verbs, status codes and ``Status`` error bodies it serves:

- ``GET    /api/v1/namespaces/{ns}/pods?labelSelector=``  list (PodList)
- ``POST   /api/v1/namespaces/{ns}/pods``                 create (201; 409 AlreadyExists)
- ``DELETE /api/v1/namespaces/{ns}/pods/{name}``          graceful delete (200 and the pod
  with ``deletionTimestamp``; 404 NotFound)
- ``PATCH  /api/v1/namespaces/{ns}/pods/{name}``          merge or strategic-merge patch of
  metadata (415 for other patch types)
- ``GET    /api/v1/nodes/{name}``                         read (404 once the node is gone)

There is no scheduler or kubelet: the test plays them (``schedule``,
``finish``, ``reclaim``). A pod deleted with a grace period stays, draining,
while its name is in ``holding`` (a busy worker still draining), and otherwise
is gone on the next request, as when its worker exits at once.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

SERVICE_ACCOUNT = "system:serviceaccount:gpufleet:gpufleet-controller"
_RESOURCE = {"pods": "pods", "nodes": "nodes"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": details, "code": code}


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


class KubeApi:
    """The API server's state (one namespace's pods, the nodes) and its HTTP front."""

    def __init__(self, namespace: str = "gpufleet", *, node: str | None = None) -> None:
        self.namespace = namespace
        self.node = node  # where new pods run at once; None: they wait for schedule()
        self.pods: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.holding: set[str] = set()  # pods whose worker is still draining
        self.forbidden: set[str] = set()  # verbs RBAC refuses, e.g. {"list"}
        self.requests: list[tuple[str, str, str, Any]] = []  # method, path, type, body
        self.lock = threading.Lock()
        self._version = 0
        self._seen_terminating: set[str] = set()  # seen once while terminating: gone next
        if node:
            self.add_node(node, "on-demand")
        self._server = self._serve(0)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    # The test's hands: scheduler, kubelet, cloud -------------------------------------

    def add_node(self, name: str, capacity: str) -> None:
        labels = {"karpenter.sh/capacity-type": capacity, "kubernetes.io/hostname": name}
        self.nodes[name] = {"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": name, "labels": labels,
                                         "creationTimestamp": _now()}}

    def schedule(self, pod: str, node: str) -> None:
        """The scheduler binds the pod and the kubelet starts it."""
        with self.lock:
            self.pods[pod]["spec"]["nodeName"] = node
            self.pods[pod]["status"] = {"phase": "Running", "startTime": _now()}

    def finish(self, pod: str) -> None:
        """The worker exited: the kubelet removes the terminating pod."""
        with self.lock:
            self.holding.discard(pod)
            self.pods.pop(pod, None)

    def reclaim(self, node: str) -> None:
        """The cloud takes a spot node back: its pods are evicted, then the node is gone."""
        with self.lock:
            self.nodes.pop(node, None)
            for pod in self.pods.values():
                if pod["spec"].get("nodeName") == node:
                    pod["metadata"].setdefault("deletionTimestamp", _now())
                    pod["status"].setdefault("conditions", []).append({
                        "type": "DisruptionTarget", "status": "True",
                        "reason": "DeletionByTaintManager", "lastTransitionTime": _now(),
                        "message": "Taint manager: deleting due to NoExecute taint"})

    @contextlib.contextmanager
    def unreachable(self) -> Iterator[None]:
        """The API server is down for a while (connections refused), then back on its port."""
        self._server.shutdown()
        self._server.server_close()
        try:
            yield
        finally:
            self._server = self._serve(self.port)

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test",
                                                      "namespace": self.namespace}}]}))
        return path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # The API -----------------------------------------------------------------------

    def _serve(self, port: int) -> ThreadingHTTPServer:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                ctype = self.headers.get("Content-Type", "")
                code, reply = api.handle(self.command, self.path, ctype, body)
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def handle(self, method: str, target: str, ctype: str, body: Any
               ) -> tuple[int, dict[str, Any]]:
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        with self.lock:
            self.requests.append((method, url.path, ctype, body))
            self._finish_terminating()
            if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4 and method == "GET":
                return self._guard("get", "nodes", "") or self._node(parts[3])
            if parts[:3] != ["api", "v1", "namespaces"] or len(parts) < 5 \
                    or parts[4] != "pods":
                return 404, _status(404, "NotFound", "the server could not find the "
                                    "requested resource")
            namespace, name = parts[3], (parts[5] if len(parts) > 5 else None)
            verb = {("GET", False): "list", ("POST", False): "create",
                    ("DELETE", True): "delete", ("PATCH", True): "patch",
                    ("GET", True): "get"}.get((method, name is not None))
            if verb is None:
                return 405, _status(405, "MethodNotAllowed", f"{method} is not supported")
            refused = self._guard(verb, "pods", namespace)
            if refused:
                return refused
            if namespace != self.namespace:
                return 404, _status(404, "NotFound", f'namespaces "{namespace}" not found',
                                    name=namespace, kind="namespaces")
            if verb == "list":
                return 200, self._list(query.get("labelSelector", ""))
            if verb == "create":
                return self._create(body)
            pod = self.pods.get(name or "")
            if pod is None:
                return 404, _status(404, "NotFound", f'pods "{name}" not found',
                                    name=name, kind="pods")
            if verb == "delete":
                return self._delete(pod, body or {})
            if verb == "patch":
                return self._patch(pod, ctype, body)
            return 200, pod

    def _guard(self, verb: str, resource: str, namespace: str
               ) -> tuple[int, dict[str, Any]] | None:
        if verb not in self.forbidden:
            return None
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        return 403, _status(403, "Forbidden", f'{resource} is forbidden: User '
                            f'"{SERVICE_ACCOUNT}" cannot {verb} resource "{resource}" in '
                            f'API group ""{where}', kind=resource)

    def _node(self, name: str) -> tuple[int, dict[str, Any]]:
        node = self.nodes.get(name)
        if node is None:
            return 404, _status(404, "NotFound", f'nodes "{name}" not found',
                                name=name, kind="nodes")
        return 200, node

    def _list(self, selector: str) -> dict[str, Any]:
        items = [p for p in self.pods.values()
                 if _matches(p["metadata"].get("labels") or {}, selector)]
        return {"kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._version)}, "items": items}

    def _create(self, pod: Any) -> tuple[int, dict[str, Any]]:
        name = (pod or {}).get("metadata", {}).get("name")
        if not name or pod.get("kind") != "Pod" or not pod.get("spec", {}).get("containers"):
            return 422, _status(422, "Invalid", "Pod is invalid: metadata.name or "
                                "spec.containers: Required value", kind="pods")
        if name in self.pods:
            return 409, _status(409, "AlreadyExists", f'pods "{name}" already exists',
                                name=name, kind="pods")
        self._version += 1
        pod["metadata"].update(namespace=self.namespace, uid=str(uuid.uuid4()),
                               creationTimestamp=_now(), resourceVersion=str(self._version))
        pod["status"] = {"phase": "Pending"}
        if self.node:
            pod["spec"]["nodeName"] = self.node
            pod["status"] = {"phase": "Running", "startTime": _now()}
        self.pods[name] = pod
        return 201, pod

    def _delete(self, pod: dict[str, Any], options: dict[str, Any]
                ) -> tuple[int, dict[str, Any]]:
        grace = options.get("gracePeriodSeconds",
                            pod["spec"].get("terminationGracePeriodSeconds", 30))
        if grace == 0 or pod["spec"].get("nodeName") is None:  # nothing running: gone now
            self.pods.pop(pod["metadata"]["name"])
            return 200, pod
        pod["metadata"].setdefault("deletionTimestamp", _now())
        pod["metadata"].setdefault("deletionGracePeriodSeconds", grace)
        return 200, pod

    def _patch(self, pod: dict[str, Any], ctype: str, body: Any
               ) -> tuple[int, dict[str, Any]]:
        if ctype.split(";")[0] not in ("application/merge-patch+json",
                                       "application/strategic-merge-patch+json"):
            return 415, _status(415, "UnsupportedMediaType",
                                f"the body of the request was in an unknown format - "
                                f"accepted media types include: application/merge-patch+json, "
                                f"application/strategic-merge-patch+json (got {ctype})")
        for field in ("annotations", "labels"):
            changes = (body or {}).get("metadata", {}).get(field)
            if changes:
                current = pod["metadata"].setdefault(field, {})
                for key, value in changes.items():
                    if value is None:
                        current.pop(key, None)
                    else:
                        current[key] = value
        return 200, pod

    def _finish_terminating(self) -> None:
        """The kubelet: a deleted pod whose worker is not still draining is gone."""
        for name in [n for n, p in self.pods.items()
                     if p["metadata"].get("deletionTimestamp") and n not in self.holding]:
            if name in self._seen_terminating:
                del self.pods[name]
            else:
                self._seen_terminating.add(name)


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeApi]:
    """A fresh API server, and a kubeconfig (KUBECONFIG) whose context points at it."""
    api = KubeApi()
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
    yield api
    api.close()
