"""One suite every provider passes: local worker processes, an EC2 Auto Scaling group
(moto in server mode over HTTP) and Kubernetes pods (tests/kube_api.py over HTTP).

What the controller needs of a provider: machines it launched are seen by any
provider of the pool (a controller started again finds them), a drained machine
is draining or gone while the rest go on, and protecting busy machines and
asking whether spot was refused work on a fresh pool. What only one platform
does (the group's spot-first policy, its lifecycle hook, scale-in protection
flags; a local worker's own process) stays in that provider's tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpufleet.autoscale.providers.aws import AwsProvider
from gpufleet.autoscale.providers.base import Machine, Provider, pool_name
from gpufleet.autoscale.providers.kubernetes import KubernetesProvider
from gpufleet.autoscale.providers.local import LocalProvider
from gpufleet.config import Settings
from gpufleet.domain import Capacity
from gpufleet.models.base import canonical_spec
from tests.conftest import PYTHONPATH
from tests.kube_api import KubeApi

MODEL = canonical_spec("synthetic?item_ms=10")
Opener = Callable[[], Provider]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"GPUFLEET_HOME": str(tmp_path / "home")})


@pytest.fixture(params=["local", "aws", "kubernetes"])
def open_provider(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Opener]:
    """Opens a provider of one pool, as each controller (or a restarted one) would."""
    if request.param == "aws":
        group = request.getfixturevalue("group")
        yield lambda: AwsProvider(settings, model=MODEL, group=group)
        return
    if request.param == "kubernetes":
        kube: KubeApi = request.getfixturevalue("kube")
        kube.node = "node-1"  # pods run as soon as they are made
        kube.add_node("node-1", "on-demand")
        with_image = Settings.from_env({"GPUFLEET_HOME": str(settings.home),
                                        "GPUFLEET_K8S_IMAGE": "gpufleet:0.1.0"})
        yield lambda: KubernetesProvider(with_image, model=MODEL)
        return
    registry = settings.home / "fleet" / pool_name(MODEL)
    opened: list[LocalProvider] = []

    def local() -> Provider:
        provider = LocalProvider(settings, model=MODEL, registry=registry,
                                 env={"PYTHONPATH": PYTHONPATH})
        opened.append(provider)
        return provider

    yield local
    # The workers it started drain and exit; none outlives the test.
    last = local()
    last.drain([m.id for m in last.machines()])
    for provider in opened:
        provider.stop(timeout_s=30)
    _until(lambda: not last.machines(), what="every local worker gone")


def _until(done: Callable[[], bool], *, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _machines(provider: Provider, count: int) -> list[Machine]:
    _until(lambda: len(provider.machines()) == count, what=f"{count} machine(s)")
    return provider.machines()


def test_a_fresh_pool_has_no_machines_and_spot_is_not_refused(open_provider: Opener) -> None:
    provider = open_provider()
    assert provider.machines() == []
    assert provider.spot_refused() is False
    provider.protect([])  # nothing busy: nothing to protect, and no error


def test_launched_machines_are_seen_by_any_provider_of_the_pool(
        open_provider: Opener) -> None:
    # When a provider launches two spot machines
    provider = open_provider()
    before = time.time()
    ids = provider.launch(2, Capacity.SPOT)
    # Then it sees two live machines (the ids it returned among them), not draining
    machines = _machines(provider, 2)
    assert set(ids) <= {m.id for m in machines}
    assert not any(m.draining for m in machines)
    assert all(m.launched_at >= before - 60 and m.capacity in set(Capacity) for m in machines)
    # And so does a provider opened afresh: a controller started again finds them
    assert {m.id for m in open_provider().machines()} == {m.id for m in machines}


def test_a_drained_machine_goes_and_the_rest_stay(open_provider: Opener) -> None:
    # Given two machines, the busy one protected from the platform's own scale-in
    provider = open_provider()
    provider.launch(2, Capacity.ON_DEMAND)
    busy, idle = (m.id for m in _machines(provider, 2))
    provider.protect([busy])
    # When the idle one is drained
    provider.drain([idle])
    # Then it is draining, then gone; the busy one stays, not draining
    _until(lambda: idle not in {m.id for m in provider.machines() if not m.draining},
           what="the drained machine draining or gone")
    _until(lambda: idle not in {m.id for m in provider.machines()},
           what="the drained machine gone")
    assert [(m.id, m.draining) for m in open_provider().machines()] == [(busy, False)]
