"""The dashboard in a real browser: headless Chromium (Debian's package, driven by
Playwright) against a real `gpufleet api` process, a real controller and real workers.

Two tenants, acme and beta, each with jobs on specs of their own. Every page is
loaded with each tenant's key and must raise no console error and show nothing of the
other tenant. A job submitted here shows its progress and its failures with their
reasons; cancel and redrive are done by clicking. Screenshots are kept in
test-artifacts/dashboard/ (the path is printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from gpufleet.jobs import enqueue_job, new_job_id
from gpufleet.models.base import canonical_spec
from tests.api.conftest import api_home, make_key, tenant_input
from tests.conftest import REPO, SAMPLE_DIR, Home, write_files
from tests.servers import free_port

pytestmark = pytest.mark.browser
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
WAIT_MS = 30_000  # Playwright waits this long for what a page should show: never a timing
# Specs of each tenant's own: batch_size=1 finishes items one by one, so progress moves.
ACME = canonical_spec("synthetic?item_ms=400&batch_size=1")  # 16 items: about 6 s
ACME_IDLE = canonical_spec("synthetic?item_ms=1&batch_size=3")  # no worker: stays queued
BETA = canonical_spec("synthetic?item_ms=2&batch_size=7")
PAGES = ("#/jobs", "#/workers", "#/fleet", "#/dlq")
# What a screen reader could not name: header cells without a scope, controls without a
# label, charts without a name, tables without a caption.
UNLABELLED = """() => [
  ...[...document.querySelectorAll("th:not([scope])")].map((e) => "th " + e.textContent),
  ...[...document.querySelectorAll("input, select, button")].filter(
    (e) => !e.labels?.length && !e.getAttribute("aria-label") && !e.textContent.trim())
    .map((e) => e.outerHTML),
  ...[...document.querySelectorAll("svg.chart:not([aria-labelledby])")].map(() => "svg"),
  ...[...document.querySelectorAll("table:not(:has(caption))")].map(() => "table"),
]"""


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is not installed: scripts/test-deps.sh installs it "
                    "(make test runs it)")
    return found


@dataclass
class Dash:
    home: Home
    url: str
    keys: dict[str, str] = field(default_factory=dict)  # acme, acme-read, beta
    jobs: dict[str, str] = field(default_factory=dict)  # what each is: its id
    flaky_worker: subprocess.Popen[bytes] | None = None  # dead-letters acme-flaky's task

    def http(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.keys[who]}"})

    def submit(self, who: str, body: dict[str, Any]) -> str:
        with self.http(who) as http:
            response = http.post("/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        job: str = response.json()["job"]
        return job

    def job(self, who: str, job_id: str) -> dict[str, Any]:
        with self.http(who) as http:
            doc: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        return doc


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    home = api_home(tmp_path_factory.mktemp("dashboard") / "home")
    port = free_port()
    home.spawn("api", "--port", str(port))
    d = Dash(home, f"http://127.0.0.1:{port}")
    for name, tenant, scopes in (("acme", "acme", "submit,read,admin"),
                                 ("acme-read", "acme", "read"),
                                 ("beta", "beta", "submit,read,admin")):
        d.keys[name] = make_key(home, tenant, scopes)[1]
    # acme's inputs: three photos (thumbnails) and synthetic objects; beta's: its own
    photos = tenant_input(home, "acme") / "photos"
    keys = write_files(photos, 12)
    for jpeg in sorted(SAMPLE_DIR.glob("*.JPEG"))[:3]:
        shutil.copy(jpeg, photos / jpeg.name)
        keys.append(jpeg.name)
    d.jobs["acme-keys"] = json.dumps(keys)
    write_files(tenant_input(home, "beta") / "photos", 5)
    home.wait_for(lambda: _healthy(d.url), timeout_s=60, what="the API")
    # beta's job, done by a worker of its own spec
    d.jobs["beta"] = d.submit("beta", {"items": [f"item-{i:05d}.bin" for i in range(5)],
                                       "model": BETA, "input": "photos/"})
    home.spawn("worker", "--model", BETA, "--max-idle", "2")
    # acme's job that will wait, to be cancelled
    d.jobs["acme-idle"] = d.submit("acme", {"items": keys[:3], "model": ACME_IDLE,
                                            "input": "photos/"})
    # acme's task a flaky model dead-letters at its first failure (an operator's plugin)
    heal = home.path / "healed"
    flaky = f"tests.e2e.plugins:FlakyTagger?heal_file={heal}"
    index = home.index()
    try:
        d.jobs["acme-flaky"] = enqueue_job(
            home.settings, index, new_job_id(), keys[:2], input=photos.as_uri() + "/",
            output=home.settings.output, model=flaky, tenant="acme").id
    finally:
        index.close()
    d.flaky_worker = home.spawn("worker", "--model", flaky, "--max-idle", "1",
                                GPUFLEET_MAX_RECEIVES="1")
    # The controller of acme's spec: it starts and stops acme's workers, with its reasons
    home.spawn("controller", "--provider", "local", "--model", ACME, "--interval", "0.5",
               "--cooldown", "3", "--max-workers", "2")
    try:
        yield d
    finally:
        for proc in home.procs:  # the controller and workers first, gently
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for record in (home.path / "fleet").glob("*/*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                os.kill(json.loads(record.read_text())["pid"], signal.SIGKILL)
        home.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    executable = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()
    print(f"\ndashboard screenshots: {ARTIFACTS}")


class Tab:
    """A browser tab signed in with one key, collecting console errors as it goes."""

    def __init__(self, browser: Any, dash: Dash, who: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.who, self.errors = who, []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{dash.url}/dashboard/")
        self.page.get_by_label("API key").fill(dash.keys[who])
        self.page.get_by_role("button", name="Use key").click()
        self.expect(self.page.locator("#tenant")).to_contain_text("tenant")

    @staticmethod
    def expect(locator: Any) -> Any:
        from playwright.sync_api import expect
        return expect(locator)

    def open(self, hash_route: str) -> Any:
        """Go to a view and wait until it is shown (the shell marks <main> with its route)."""
        self.page.evaluate("route => { location.hash = route; }", hash_route)
        self.expect(self.page.locator("main")).to_have_attribute(
            "data-route", hash_route, timeout=WAIT_MS)
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"console errors for {self.who}: {self.errors}"


def _tab(browser: Any, dash: Dash, who: str) -> Iterator[Tab]:
    tab = Tab(browser, dash, who)
    yield tab
    tab.close()


@pytest.fixture
def acme(browser: Any, dash: Dash) -> Iterator[Tab]:
    yield from _tab(browser, dash, "acme")


def test_a_job_shows_its_progress_then_its_failures_with_reasons(acme: Tab, dash: Dash) -> None:
    # Given a job submitted now, with one missing object, while the controller watches
    keys = json.loads(dash.jobs["acme-keys"])
    job = dash.submit("acme", {"items": [*keys, "missing.jpg"], "model": ACME,
                               "input": "photos/", "deadline_s": 3600})
    dash.home.wait_for(lambda: dash.job("acme", job)["done"] >= 2, timeout_s=120,
                       what="the controller's workers to start on the job")
    # When its page is opened while it runs
    page = acme.open(f"#/jobs/{job}")
    # Then it is running, part way, with a rate
    acme.expect(page.locator(".summary")).to_contain_text("running")
    done = int(page.locator("progress").first.get_attribute("value") or 0)
    assert 0 < done < len(keys) + 1
    acme.shot("job-running")
    # And once finished, it is partial, with the missing object's reason among failures
    acme.expect(page.locator(".summary")).to_contain_text("partial", timeout=120_000)
    failures = page.get_by_role("table", name=re.compile("Failures by reason"))
    acme.expect(failures).to_contain_text("missing")
    acme.expect(page.locator(".summary")).to_contain_text("met")  # its deadline
    # And the photos have thumbnails, made through signed URLs
    page.get_by_label("Status").select_option("done")
    page.get_by_role("button", name="Filter").click()
    acme.expect(page.locator("img.thumb")).to_have_count(3, timeout=WAIT_MS)
    acme.shot("job-finished")
    # And the jobs list and the fleet show it, with the controller's decisions
    page = acme.open("#/jobs")
    acme.expect(page.get_by_role("table", name=re.compile("Jobs"))).to_contain_text(job)
    acme.shot("jobs")
    page = acme.open("#/workers")
    acme.expect(page.get_by_role("table", name=re.compile("Workers"))).to_contain_text(ACME)
    acme.shot("workers")
    page = acme.open("#/fleet")
    page.get_by_text("The controller's decisions as a table").click()
    acme.expect(page.get_by_role("table", name=re.compile("Decisions"))).to_contain_text(
        "start")
    acme.expect(page.locator("svg.chart")).to_have_count(4)
    acme.shot("fleet")


def test_a_job_is_cancelled_from_its_page_after_a_confirmation(acme: Tab, dash: Dash) -> None:
    job = dash.jobs["acme-idle"]
    page = acme.open(f"#/jobs/{job}")
    acme.expect(page.locator(".summary")).to_contain_text("queued")
    # (with the keyboard alone: the button, then the dialog, whose first choice keeps it)
    page.get_by_role("button", name="Cancel job…").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    acme.expect(dialog).to_contain_text(f"Cancel job {job}?")
    acme.expect(dialog.get_by_role("button", name="Keep it")).to_be_focused()
    page.keyboard.press("Escape")  # Esc closes it, and nothing happens
    acme.expect(dialog).to_be_hidden()
    assert dash.job("acme", job)["state"] == "queued"
    page.get_by_role("button", name="Cancel job…").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    acme.expect(dialog.get_by_role("button", name="Cancel job")).to_be_focused()
    page.keyboard.press("Enter")
    acme.expect(page.locator(".summary")).to_contain_text("cancelled", timeout=WAIT_MS)
    acme.expect(page.get_by_role("status")).to_have_text(f"Job {job} cancelled")
    assert dash.job("acme", job)["state"] == "cancelled"
    acme.shot("job-cancelled")


def test_dead_letters_are_redriven_with_an_admin_key_only(browser: Any, dash: Dash) -> None:
    job = dash.jobs["acme-flaky"]
    with contextlib.closing(Tab(browser, dash, "acme-read")) as reader:
        # A read key sees why it cannot, and no button
        page = reader.open("#/dlq")
        reader.expect(page.locator("main")).to_contain_text("admin scope")
        assert page.get_by_role("button", name="Redrive all…").count() == 0
        # nor a Cancel button on a job
        reader.open(f"#/jobs/{job}")
        assert page.get_by_role("button", name="Cancel job…").count() == 0
    with contextlib.closing(Tab(browser, dash, "acme")) as admin:
        page = admin.open("#/dlq")
        letters = page.get_by_role("table", name=re.compile("Dead-lettered"))
        admin.expect(letters).to_contain_text("GPU fell off the bus", timeout=120_000)
        admin.expect(letters).to_contain_text(job)
        admin.shot("dead-letters")
        # (once the worker that gave up is gone: it would take the redriven task again)
        assert dash.flaky_worker is not None
        dash.flaky_worker.wait(timeout=60)
        page.get_by_role("button", name="Redrive all…").click()
        page.get_by_role("dialog").get_by_role("button", name="Redrive").click()
        admin.expect(page.locator("#status")).to_contain_text("Redriven 1")
        admin.expect(page.locator("main")).to_contain_text("none")
    # Then its items are pending again: the job runs again
    view = dash.job("acme", job)
    assert (view["state"], view["pending"], view["failed"]) == ("running", 2, 0)


def test_no_page_shows_another_tenants_jobs_or_specs(browser: Any, dash: Dash) -> None:
    acme_ids = [dash.jobs[k] for k in ("acme-idle", "acme-flaky")]
    dash.home.wait_for(lambda: dash.job("beta", dash.jobs["beta"])["state"] == "succeeded",
                       what="beta's job")
    for who, mine, theirs in (("beta", [dash.jobs["beta"], BETA], [*acme_ids, ACME]),
                              ("acme", [*acme_ids, ACME], [dash.jobs["beta"], BETA])):
        with contextlib.closing(Tab(browser, dash, who)) as tab:
            seen = ""
            for route in PAGES:
                page = tab.open(route)
                seen += page.locator("main").inner_text()
                assert page.evaluate(UNLABELLED) == [], (who, route)
                tab.shot(f"{who}-{route.strip('#/')}")
            seen += tab.open(f"#/jobs/{mine[0]}").locator("main").inner_text()
            assert mine[0] in seen
            for secret in theirs:
                assert secret not in seen, (who, secret)
                assert secret not in tab.page.content()
