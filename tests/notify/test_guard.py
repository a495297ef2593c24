"""The SSRF guard: webhooks reach public HTTPS addresses only, checked again at delivery."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpufleet.config import NotifySettings
from gpufleet.errors import ConfigError
from gpufleet.index.outbox import Outbox
from gpufleet.notify.dispatcher import Dispatcher
from gpufleet.notify.guard import TargetRefused, check_url
from gpufleet.notify.targets import TargetStore
from tests.notify.conftest import Notifying
from tests.notify.receiver import receiver


@pytest.mark.parametrize(("url", "why"), [
    ("https://127.0.0.1/hook", "loopback"),
    ("https://10.1.2.3/hook", "private"),
    ("https://192.168.0.10:8443/hook", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:10.0.0.1]/hook", "private"),
    ("https://[fe80::1]/hook", "link-local"),
    ("https://224.0.0.1/hook", "multicast"),
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://240.0.0.1/hook", "reserved"),
    ("https://localhost/hook", "loopback"),  # a name that resolves to loopback
])
def test_private_and_special_addresses_are_refused(url: str, why: str) -> None:
    with pytest.raises(TargetRefused, match=f"a {why} address: refused"):
        check_url(url)


@pytest.mark.parametrize(("url", "message"), [
    ("http://93.184.215.14/hook", "http is refused"),
    ("ftp://93.184.215.14/hook", "expected an https:// URL"),
    ("https://user:pw@93.184.215.14/hook", "credentials in the URL"),
    ("https:///hook", "no host"),
    ("https://no-such-host.invalid/hook", "does not resolve"),
])
def test_other_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(TargetRefused, match=message):
        check_url(url)


def test_a_public_address_passes_and_is_what_delivery_connects_to() -> None:
    resolved = check_url("https://93.184.215.14:8443/hook?x=1")
    assert (resolved.address, resolved.port, resolved.host) == ("93.184.215.14", 8443,
                                                               "93.184.215.14")


def test_registration_refuses_a_private_webhook_and_a_malformed_arn(notifying: Notifying
                                                                     ) -> None:
    strict = TargetStore(notifying.index, NotifySettings())
    with pytest.raises(TargetRefused, match="loopback"):
        strict.add("https://127.0.0.1:9/hook", tenant="a")
    with pytest.raises(ConfigError, match="not an SNS topic ARN"):
        strict.add("arn:aws:s3:::bucket", tenant="a")
    with pytest.raises(ConfigError, match="events must be some of"):
        strict.add("arn:aws:sns:us-east-1:123456789012:t", tenant="a", events="done")
    assert strict.listed() == []


def test_delivery_checks_the_address_again(notifying: Notifying) -> None:
    with receiver() as hook:
        # Given a loopback webhook registered while that was allowed
        job = notifying.job("job-g", items=1)
        notifying.targets.add(hook.url, tenant="a", job_id=job)
        # When a dispatcher that allows no private address delivers its event
        strict = replace(notifying.settings, notify=NotifySettings(allow_http=1))
        with Dispatcher(strict, notifying.index) as dispatcher:
            done = dispatcher.run_once()
    # Then nothing reached the receiver and the event failed, saying why
    assert done.failed == 1 and not hook.received
    (row,) = Outbox(notifying.index).rows(job_id=job)
    assert row.state == "failed" and "loopback address: refused" in (row.last_error or "")
