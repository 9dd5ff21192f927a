"""The dashboard at GET /ui: its files over plain HTTP, and the page in a real browser.

The browser tests drive Debian's Chromium with Playwright (no downloaded browser) against
the real API over HTTP on a real Postgres, with a real worker in the same event loop. Each
saves a screenshot to tests/artifacts/, to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from api_harness import SERVER_STOP_SECONDS, Api, running_api
from skiplock.api.app import create_app
from skiplock.api.server import QuietServer
from skiplock.api.server import config as server_config
from skiplock.settings import Settings
from worker_harness import running_worker

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LIVE_SECONDS = 30  # how long the page may take to show what happened (a slow CI machine)
expect.set_options(timeout=LIVE_SECONDS * 1000)


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox"] if os.geteuid() == 0 else [],
        )
        try:
            yield launched
        finally:
            await launched.close()


async def snap(page: Page, name: str) -> None:
    """A screenshot of the whole page, tests/artifacts/<name>.png, to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


@contextlib.asynccontextmanager
async def dashboard(browser: Browser, name: str) -> AsyncIterator[Page]:
    """A fresh page; fails the test on a script error or a blocked (CSP) load. A failing
    test leaves its page's screenshot in tests/artifacts/<name>-failed.png."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    try:
        yield page
    except BaseException:
        await snap(page, f"{name}-failed")
        raise
    finally:
        await page.close()
    assert problems == []


async def sign_in(page: Page, api: Api) -> None:
    await page.goto(f"{api.base_url}/ui")
    await page.fill("#login-key", api.acme.api_key)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_text("live")


def row(page: Page, job_id: str) -> Locator:
    return page.locator(f'#jobs-body tr[data-id="{job_id}"]')


async def submit_from_form(page: Page, job_type: str, input_text: str) -> None:
    await page.select_option("#submit-type", job_type)
    await page.fill("#submit-input", input_text)
    await page.click("#submit-form button[type=submit]")


# ------------------------------------------------------------------------------------------
# The files, over plain HTTP
# ------------------------------------------------------------------------------------------


async def test_ui_files_are_served_without_a_key_with_a_strict_policy(api: Api) -> None:
    page = await api.client.get("/ui")  # no Authorization: the page asks for a key itself
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"  # asset URLs carry ?token=
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    # Its own script and style, and fetch/EventSource/<img>/<video> to its own origin only.
    for directive in ("script-src", "style-src", "connect-src", "img-src", "media-src"):
        assert policy[directive] == "'self'", directive
    assert policy["form-action"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert '<script src="/ui/app.js" defer></script>' in page.text
    assert '<link rel="stylesheet" href="/ui/app.css">' in page.text
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline

    script = await api.client.get("/ui/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    # Data reaches the page through textContent only; the key only through sessionStorage.
    markup = re.compile(r"\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\(")
    assert markup.search(script.text) is None
    assert "localStorage" not in script.text and "document.cookie" not in script.text
    automation = await api.client.get("/ui/automation.js")  # webhooks and schedules
    assert automation.headers["content-type"] == "text/javascript; charset=utf-8"
    assert '<script src="/ui/automation.js" defer></script>' in page.text
    assert markup.search(automation.text) is None and "Storage" not in automation.text
    style = await api.client.get("/ui/app.css")
    assert style.status_code == 200
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert (await api.client.head("/ui")).status_code == 200
    assert (await api.client.get("/ui/nope.js")).status_code == 404


# ------------------------------------------------------------------------------------------
# The page, in Chromium
# ------------------------------------------------------------------------------------------


IMAGE_LOADED = (
    "() => { const img = document.querySelector('#d-preview img');"
    " return img !== null && img.complete && img.naturalWidth > 0; }"
)


@pytest.mark.slow
async def test_a_diagram_submitted_from_the_form_turns_done_live_with_its_svg_shown(
    api: Api, browser: Browser
) -> None:
    async with dashboard(browser, "ui-diagram-done") as page:
        await sign_in(page, api)
        # The form shows the type's input schema, and the API's message on a 4xx.
        await page.select_option("#submit-type", "diagram")
        await expect(page.locator("#submit-schema")).to_contain_text('"source"')
        await submit_from_form(page, "diagram", '{"source": ""}')
        await expect(page.locator("#submit-result")).to_contain_text("422")
        await submit_from_form(page, "diagram", "{not json")
        await expect(page.locator("#submit-result")).to_contain_text("not valid JSON")

        # Jobs submitted elsewhere appear live; so does the one from the form.
        echo = await api.submit("echo", input={"text": "hello"})
        doomed = await api.submit("doomed")
        long = await api.submit("sleep", input={"seconds": 60, "tick": 0.2})
        await expect(row(page, long)).to_have_attribute("data-status", "queued")
        source = "digraph { rankdir=LR; submit -> queue -> worker -> done }"
        await submit_from_form(page, "diagram", json.dumps({"source": source}))
        await expect(page.locator("#submit-result")).to_contain_text("Queued job")
        job_id = (await page.locator("#submit-result").inner_text()).split()[-1]
        # Submitting opens the job's detail, followed live through its own stream.
        await expect(page.locator("#d-id")).to_have_text(job_id)
        await expect(row(page, job_id)).to_have_attribute("data-status", "queued")
        assert await page.locator("#jobs-body tr").count() == 4

        async with running_worker(api.database_url, api.storage_dir):
            await expect(row(page, job_id)).to_have_attribute("data-status", "done")
            await expect(page.locator("#d-preview img")).to_be_visible()
            await page.wait_for_function(IMAGE_LOADED)
            src = await page.locator("#d-preview img").get_attribute("src") or ""
            assert "/content?token=st_" in src
            await expect(page.locator("#d-fields")).to_contain_text("done")
            await expect(page.locator("#d-timeline")).to_contain_text("done, output")
            await expect(page.locator("#d-preview a")).to_contain_text("Download diagram.svg")
            await expect(row(page, echo)).to_have_attribute("data-status", "done")
            await expect(row(page, doomed)).to_have_attribute("data-status", "failed")
            await expect(row(page, long).locator("progress")).to_be_visible()
            diagram = page.locator("#stats-body tr", has_text="diagram")
            await expect(diagram.locator("td.done")).to_have_text("1")
            sleeping = page.locator("#stats-body tr", has_text="sleep")
            await expect(sleeping.locator("td.running")).to_have_text("1")
            # A row opens that job's detail: a failed job shows its error.
            await row(page, doomed).click()
            await expect(page.locator("#d-error")).to_have_text("this input can never work")
            await expect(page.locator("#d-retry")).to_be_visible()
            await row(page, echo).click()
            await expect(page.locator("#d-preview a")).to_contain_text("Download echo.txt")
            await row(page, job_id).click()
            await page.wait_for_function(IMAGE_LOADED)
            await snap(page, "ui-diagram-done")
            await api.client.post(
                f"{api.acme.prefix}/content-jobs/{long}/cancel", headers=api.acme.headers
            )


@pytest.mark.slow
async def test_a_running_job_shows_progress_and_turns_canceled_when_canceled(
    api: Api, browser: Browser
) -> None:
    job_id = await api.submit("sleep", input={"seconds": 120, "tick": 0.2})
    async with (
        running_worker(api.database_url, api.storage_dir),
        dashboard(browser, "ui-canceled") as page,
    ):
        await sign_in(page, api)
        await expect(row(page, job_id)).to_have_attribute("data-status", "running")
        await row(page, job_id).click()
        await expect(page.locator("#d-progress-row")).to_be_visible()
        await page.wait_for_function("() => document.querySelector('#d-progress').value > 0.01")
        await expect(page.locator("#d-retry")).to_be_hidden()
        await page.click("#d-cancel")
        await expect(row(page, job_id)).to_have_attribute("data-status", "canceled")
        await expect(page.locator("#d-fields")).to_contain_text("canceled")
        await expect(page.locator("#d-timeline")).to_contain_text("canceled")
        await expect(page.locator("#d-cancel")).to_be_hidden()
        await expect(page.locator("#d-retry")).to_be_visible()
        sleeping = page.locator("#stats-body tr", has_text="sleep")
        await expect(sleeping.locator("td.canceled")).to_have_text("1")
        await snap(page, "ui-canceled")
        query = "SELECT status FROM skiplock.content_jobs WHERE id = %s"
        status = api.sql(query, (uuid.UUID(job_id),))
        assert status == [("canceled",)]
        # Filters: by status and type, from the API.
        other = await api.submit("noop")
        await page.select_option("#filter-status", "canceled")
        await expect(page.locator("#jobs-body tr")).to_have_count(1)
        await page.select_option("#filter-status", "")
        await expect(row(page, other)).to_be_visible()


@contextlib.asynccontextmanager
async def serving(database_url: str, storage_dir: Path, port: int) -> AsyncIterator[None]:
    """The API again, on a given port (a restart), for the companies already made."""
    closing = asyncio.Event()
    settings = Settings(database_url=database_url, storage_dir=storage_dir)
    server = QuietServer(server_config(create_app(settings, closing=closing), "127.0.0.1", port))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        closing.set()
        server.should_exit = True
        await asyncio.wait_for(task, SERVER_STOP_SECONDS)


async def status_in_database(api: Api, job_id: str, status: str) -> None:
    query = "SELECT status FROM skiplock.content_jobs WHERE id = %s"
    for _ in range(LIVE_SECONDS * 10):
        if api.sql(query, (uuid.UUID(job_id),)) == [(status,)]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never became {status}")


@pytest.mark.slow
async def test_the_page_resumes_and_catches_up_after_an_api_restart(
    database_url: str, tmp_path: Path, browser: Browser
) -> None:
    storage = tmp_path / "storage"
    async with (
        running_worker(database_url, storage),
        dashboard(browser, "ui-after-restart") as page,
    ):
        async with running_api(database_url, storage) as api:
            port = urlsplit(api.base_url).port or 0
            await sign_in(page, api)
            before = await api.submit("echo", input={"text": "before"})
            await expect(row(page, before)).to_have_attribute("data-status", "done")
            slow = await api.submit("sleep", input={"seconds": 4, "tick": 0.2})
            await expect(row(page, slow)).to_have_attribute("data-status", "running")
            await row(page, slow).click()
            await expect(page.locator("#d-timeline")).to_contain_text("progress")
        # The API is down: the page says so. Meanwhile the job finishes, and a new one is
        # queued (in SQL) and done.
        await expect(page.locator("#conn")).to_have_text("reconnecting…")
        await status_in_database(api, slow, "done")
        queued = api.sql(
            "SELECT skiplock.enqueue_content_job(%s, 'echo', '{\"text\": \"while down\"}')",
            (api.acme.company_id,),
        )
        while_down = str(queued[0][0])
        await status_in_database(api, while_down, "done")
        await expect(row(page, slow)).to_have_attribute("data-status", "running")
        async with serving(database_url, storage, port):  # the same port
            await expect(page.locator("#conn")).to_have_text("live")
            await expect(row(page, slow)).to_have_attribute("data-status", "done")
            await expect(row(page, while_down)).to_have_attribute("data-status", "done")
            # The job's own stream resumed too: its detail shows the end and the output.
            await expect(page.locator("#d-fields")).to_contain_text("done")
            await expect(page.locator("#d-preview a")).to_contain_text("slept.txt")
            await expect(page.locator("#notice")).to_have_text("")
            await snap(page, "ui-after-restart")


@pytest.mark.slow
async def test_ten_thousand_new_jobs_leave_the_page_usable(api: Api, browser: Browser) -> None:
    async with dashboard(browser, "ui-ten-thousand") as page:
        await sign_in(page, api)
        # One statement: 10,000 content_job.queued events reach the page within moments.
        api.sql(
            "INSERT INTO skiplock.content_jobs (company_id, job_type, input) "
            "SELECT %s, 'echo', jsonb_build_object('text', n) FROM generate_series(1, 10000) n",
            (api.acme.company_id,),
        )
        total = page.locator("#stats-body tr.total td.queued")
        await expect(total).to_have_text("10000")
        rows = page.locator("#jobs-body tr")
        await expect(rows.first).to_be_visible()
        # The first page grows with new jobs up to 200 rows, then reads page 1 again.
        assert 1 <= await rows.count() <= 200
        await page.click("#older")
        await expect(page.locator("#page")).to_have_text("page 2")
        await expect(rows).to_have_count(50)
        first_of_page_2 = await rows.first.get_attribute("data-id")
        await rows.first.click()
        await expect(page.locator("#d-id")).to_have_text(first_of_page_2 or "")
        await page.click("#newer")
        await expect(page.locator("#page")).to_have_text("page 1")
        await expect(rows).to_have_count(50)
        await snap(page, "ui-ten-thousand")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
async def test_a_video_output_is_previewed_in_a_video_tag(api: Api, browser: Browser) -> None:
    frames = [
        {"source": "digraph { a -> b }", "seconds": 0.5},
        {"source": "digraph { b -> c }", "seconds": 0.5},
    ]
    job_id = await api.submit("video", input={"frames": frames, "fps": 10, "width": 320})
    async with (
        running_worker(api.database_url, api.storage_dir),
        dashboard(browser, "ui-video") as page,
    ):
        await sign_in(page, api)
        await expect(row(page, job_id)).to_have_attribute("data-status", "done")
        await row(page, job_id).click()
        video = page.locator("#d-preview video")
        await expect(video).to_have_attribute("controls", "")
        # Chromium reads the stream through the token URL: its size is known.
        await page.wait_for_function(
            "() => document.querySelector('#d-preview video').videoWidth > 0"
        )
        await expect(page.locator("#d-preview a")).to_contain_text("video.mp4")


@pytest.mark.slow
async def test_bulk_cancel_and_retry_by_filter_confirm_with_the_count(
    api: Api, browser: Browser
) -> None:
    insert = (
        "INSERT INTO skiplock.content_jobs (company_id, job_type) "
        "SELECT %s, %s FROM generate_series(1, %s)"
    )
    api.sql(insert, (api.acme.company_id, "noop", 5))
    api.sql(insert, (api.acme.company_id, "echo", 2))
    api.sql(insert, (api.other.company_id, "noop", 3))
    async with dashboard(browser, "ui-bulk") as page:
        await sign_in(page, api)
        noop = page.locator("#stats-body tr", has_text="noop")
        await expect(noop.locator("td.queued")).to_have_text("5")
        await page.select_option("#filter-type", "noop")
        await page.click("#bulk-cancel")
        await expect(page.locator("#bulk-question")).to_have_text(
            "Cancel 5 queued or running noop jobs?"
        )
        await page.click("#bulk-no")  # changes nothing
        await expect(page.locator("#bulk-confirm")).to_be_hidden()
        await page.click("#bulk-cancel")
        await page.click("#bulk-yes")
        await expect(page.locator("#bulk-result")).to_have_text("Canceled: 5 jobs.")
        await expect(noop.locator("td.canceled")).to_have_text("5")
        await page.select_option("#filter-type", "")
        await page.select_option("#filter-status", "failed")
        await page.click("#bulk-retry")
        await expect(page.locator("#bulk-result")).to_have_text("No failed jobs to retry.")
        await page.select_option("#filter-status", "")
        await page.click("#bulk-retry")
        await expect(page.locator("#bulk-question")).to_have_text(
            "Retry 5 failed or canceled jobs?"
        )
        await page.click("#bulk-yes")
        await expect(page.locator("#bulk-result")).to_have_text("Queued again: 5 jobs.")
        await expect(noop.locator("td.queued")).to_have_text("5")
        counts = api.sql(
            "SELECT company_id, status, count(*) FROM skiplock.content_jobs "
            "GROUP BY company_id, status ORDER BY 1, 2"
        )
        assert sorted(counts) == sorted(
            [(api.acme.company_id, "queued", 7), (api.other.company_id, "queued", 3)]
        )
        await snap(page, "ui-bulk")


@pytest.mark.slow
async def test_paused_types_are_shown_with_how_an_operator_resumes_them(
    api: Api, browser: Browser
) -> None:
    await api.submit("echo")
    await api.submit("noop")
    api.sql(
        "INSERT INTO skiplock.paused_job_types (job_type, company_id) VALUES ('echo', %s)",
        (api.acme.company_id,),
    )
    async with dashboard(browser, "ui-paused") as page:
        await sign_in(page, api)
        echo = page.locator("#stats-body tr", has_text="echo")
        await expect(echo.locator(".badge")).to_have_text("paused")
        await expect(
            page.locator("#stats-body tr", has_text="noop").locator(".badge")
        ).to_have_count(0)
        await expect(page.locator("#paused-types")).to_have_text("echo")
        await expect(page.locator("#resume-all")).to_have_text("skiplock jobs resume echo")
        await expect(page.locator("#resume-mine")).to_have_text(
            f"skiplock jobs resume echo --company {api.acme.company_id}"
        )
        await snap(page, "ui-paused")
        # Resumed by an operator, in SQL: the next refresh of the counts says so.
        api.sql("DELETE FROM skiplock.paused_job_types")
        await api.submit("noop")  # an event: the counts are read again
        await expect(page.locator("#paused-note")).to_be_hidden()
        await expect(echo.locator(".badge")).to_have_count(0)


async def test_webhooks_show_their_deliveries_and_schedules_their_next_run(
    database_url: str, tmp_path: Path, browser: Browser
) -> None:
    from webhook_receiver import running_receiver

    async with (
        running_api(database_url, tmp_path / "storage", webhook_allow_private=True) as api,
        running_receiver(lambda n: 500 if n == 0 else 200) as receiver,
        dashboard(browser, "ui-webhooks-schedules") as page,
    ):
        await sign_in(page, api)
        await expect(page.locator("#wh-empty")).to_be_visible()
        # A webhook added from the form: its secret is shown once, there.
        await page.fill("#wh-url", "ftp://example.com/")
        await page.click("#wh-form button[type=submit]")
        await expect(page.locator("#wh-result")).to_contain_text("422")
        await page.fill("#wh-url", receiver.url)
        await page.check("#wh-event-running")
        await page.click("#wh-form button[type=submit]")
        await expect(page.locator("#wh-secret")).to_have_text(
            re.compile(r"^whsec_[A-Za-z0-9+/=]+$")
        )
        hook_row = page.locator("#wh-body tr")
        await expect(hook_row).to_have_count(1)
        await expect(hook_row).to_contain_text("running, done, failed, canceled")

        # Its deliveries, live: the first attempt is answered 500, the retry 200.
        doomed = await api.submit("doomed")
        async with running_worker(api.database_url, api.storage_dir):
            deliveries = page.locator("#wh-deliveries-body tr")
            await expect(deliveries).to_have_count(2)
            failed = page.locator('#wh-deliveries-body tr[data-status="pending"]')
            await expect(failed).to_contain_text("HTTP 500: receiver says no")
            delivered = page.locator('#wh-deliveries-body tr[data-status="delivered"]')
            await expect(delivered).to_have_count(2, timeout=LIVE_SECONDS * 1000)
        assert {json.loads(r.body)["jobId"] for r in receiver.requests} == {doomed}

        # A schedule added from the form, with its next run.
        await expect(page.locator("#sc-type option")).not_to_have_count(0)
        await page.select_option("#sc-type", "noop")
        await page.fill("#sc-cron", "61 * * * *")
        await page.click("#sc-form button[type=submit]")
        await expect(page.locator("#sc-result")).to_contain_text("Bad minute")
        await page.fill("#sc-cron", "0 9 * * 1-5")
        await page.fill("#sc-timezone", "Europe/Berlin")
        await page.click("#sc-form button[type=submit]")
        await expect(page.locator("#sc-result")).to_contain_text("first run")
        schedule = page.locator("#sc-body tr")
        await expect(schedule).to_contain_text("0 9 * * 1-5 (Europe/Berlin)")
        await expect(schedule.locator(".next-run")).not_to_have_text("—")
        [made] = (
            await api.client.get(f"{api.acme.prefix}/schedules", headers=api.acme.headers)
        ).json()["items"]
        assert made["cron"] == "0 9 * * 1-5" and made["jobType"] == "noop"
        await snap(page, "ui-webhooks-schedules")

        # Both delete from their rows.
        await schedule.get_by_role("button", name="Delete").click()
        await expect(page.locator("#sc-empty")).to_be_visible()
        await hook_row.get_by_role("button", name="Delete").click()
        await expect(page.locator("#wh-empty")).to_be_visible()
        assert api.sql("SELECT count(*) FROM skiplock.webhooks") == [(0,)]
