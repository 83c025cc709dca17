"""The safeguarding console in a real browser: Debian's Chromium driven by Playwright, against
the running pipeline (`csae router`, `csae referral worker`, `csae referral api` as processes).

A lead signs in, finds a P0 in the queue, opens it, copies the packet, records it as sent with
the police reference, sees the supplement that a later flag makes, approves one review and
dismisses another (and is told when a colleague moved a case first); a viewer sees the queue
without identifiers and no case; a forged form is refused. axe-core finds no WCAG 2.2 A/AA
violation on any page. Each page's screenshot is written to `.local/screenshots/console/`.
"""

import asyncio
import json
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from services.pipeline.publish import publish_lines, refresh
from services.referral.keys import Role, create_key
from tests.e2e.test_pipeline import SAMPLES, Pipeline, _decisions, pipeline

__all__ = ["pipeline"]  # the running stack, shared with the pipeline's own e2e test

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parents[2] / ".local" / "screenshots" / "console"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
SAMPLE = [line for line in SAMPLES.read_bytes().splitlines() if line.strip()]
DANGER_LINE, REVIEW_LINE = SAMPLE[4], SAMPLE[6]
"""The sample's P0 flag (a child in immediate danger, West Yorkshire) and its review."""


def _flag(line: bytes, account: str) -> bytes:
    """A fresh copy of a sample flag (new id, detected now) about an account of this run's own,
    so it opens a case of its own in the shared database."""
    document = json.loads(refresh(line, datetime.now(UTC)))
    document["subject"]["account_id"] = account
    return json.dumps(document).encode()


def _profile(tmp_path: Path) -> Path:
    """A fresh profile folder, once Debian's Chromium is known to be there."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: `make test` installs it")
    return Path(tempfile.mkdtemp(prefix="csae-chromium-", dir=tmp_path))


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """Chromium from Debian's package, headless, with a fresh profile; the page may use the
    clipboard (the packet's copy button)."""
    profile = _profile(tmp_path)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
            locale="en-GB",
        )
        await context.grant_permissions(["clipboard-read", "clipboard-write"])
        try:
            yield context
        finally:
            await context.close()
    shutil.rmtree(profile, ignore_errors=True)


class Pages:
    """Screenshots and axe checks of every page the test visits."""

    def __init__(self) -> None:
        self.axe = Axe()
        self.checked: list[str] = []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async def look(self, page: Page, name: str) -> None:
        """Write the page's screenshot, then check it with axe-core: no violation of WCAG 2.2
        A or AA."""
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        results = await self.axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
        assert results.violations_count == 0, f"{name}: {results.generate_report()}"
        self.checked.append(name)


async def _sign_in(page: Page, base: str, key: str) -> None:
    """Sign in with the keyboard alone: Tab to the skip link first, then the key, then Enter."""
    await page.goto(f"{base}/console/sign-in")
    await page.keyboard.press("Tab")
    skip = await page.evaluate("document.activeElement.textContent")
    assert skip == "Skip to main content", "the skip link is the first stop of the keyboard"
    await page.get_by_label("API key").focus()
    await page.keyboard.type(key)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{base}/console/queue")


async def _tab_to(page: Page, name: str, most: int = 60) -> None:
    """Press Tab until the focused element's text starts with `name`."""
    for _ in range(most):
        await page.keyboard.press("Tab")
        text = await page.evaluate("document.activeElement.textContent || ''")
        if text.strip().startswith(name):
            return
    raise AssertionError(f"{name!r} not reached with {most} presses of Tab")


async def _until(page: Page, text: str, within: float = 60.0) -> None:
    """Reload the page until it shows `text` (the pipeline is asynchronous)."""
    deadline = time.monotonic() + within
    while text not in await page.content():
        assert time.monotonic() < deadline, f"{text!r} not shown after {within} s"
        await asyncio.sleep(0.5)
        await page.reload()


async def _case_of(pipeline: Pipeline, flag_id: str) -> str:
    async with httpx.AsyncClient() as client:
        views = await _decisions(client, pipeline, [flag_id])
    case_ids: list[Any] = views[flag_id]["case_ids"]
    return str(case_ids[0])


async def test_a_lead_works_the_queue_in_a_browser(
    pipeline: Pipeline, browser: BrowserContext
) -> None:
    base = pipeline.api
    keys_file = pipeline.settings.api_keys_file
    assert keys_file is not None
    viewer_key = create_key(keys_file, Role.VIEWER)  # the API sees it within 2 s
    run = uuid4().hex[:8]
    danger, first_review, second_review = (
        f"acct-browser-{run}-danger",
        f"acct-browser-{run}-review-1",
        f"acct-browser-{run}-review-2",
    )
    published = await publish_lines(pipeline.settings, [_flag(DANGER_LINE, danger)])
    p0 = await _case_of(pipeline, published[0].flag_id or "")
    pages = Pages()

    page = await browser.new_page()
    await page.goto(f"{base}/console/sign-in")
    await pages.look(page, "01-sign-in")
    await _sign_in(page, base, pipeline.key)

    # The queue refreshes itself: reviews that arrive while it is open appear without a reload.
    await page.goto(f"{base}/console/queue?status=review")
    await page.evaluate("window.csaeNotReloaded = true")
    reviews = [_flag(REVIEW_LINE, first_review), _flag(REVIEW_LINE, second_review)]
    published = await publish_lines(pipeline.settings, reviews)
    review_1, review_2 = [await _case_of(pipeline, p.flag_id or "") for p in published]
    rows = page.locator("#queue-rows")
    await expect(rows).to_contain_text(review_1[:8], timeout=45_000)
    await expect(rows).to_contain_text(review_2[:8], timeout=45_000)
    assert await page.evaluate("window.csaeNotReloaded === true"), "the page was reloaded"
    await expect(page.locator("#refreshed")).to_contain_text("Updated")

    # The queue, filtered to P0 by its form: this run's P0 case is there, marked with its clock.
    await page.goto(f"{base}/console/queue")
    await page.get_by_label("Priority").select_option("P0")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r".*/console/queue\?.*priority=P0"))
    link = page.get_by_role("link", name=re.compile(f"Open case {p0[:8]}"))
    await expect(link).to_be_visible()
    await expect(page.locator("#queue-rows tr").first).to_contain_text("P0")
    await pages.look(page, "02-queue-p0")

    # The case, opened with the keyboard (Tab to its link, whose focus is visible, then Enter):
    # the 999 call before anything else, then the clock in words.
    await _tab_to(page, f"Open case {p0[:8]}")
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "the focused link shows where the focus is"
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{base}/console/cases/{p0}")
    main = page.locator("main")
    first_block = main.locator("h1 + *")
    await expect(first_block).to_have_id("emergency")
    await expect(first_block).to_contain_text("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.")
    await expect(page.locator("#clock")).to_contain_text(re.compile(r"ready: due in \d+ min"))
    await expect(page.locator("#packet-text")).to_contain_text("West Yorkshire Police")
    await pages.look(page, "03-case-p0")

    # Copy the packet: the clipboard holds the packet text as shown.
    await page.get_by_role("button", name="Copy the packet text").click()
    await expect(page.locator("#copy-status")).to_have_text("Copied the packet text.")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("A CHILD MAY BE IN IMMEDIATE DANGER: CALL 999 NOW.")
    assert copied == await page.locator("#packet-text").text_content()

    # The print view of the same version.
    await page.get_by_role("link", name="Print view").click()
    await page.wait_for_url(f"{base}/console/cases/{p0}/packets/1/print")
    await expect(page.locator("#packet-text")).to_contain_text("CALL 999 NOW")
    await pages.look(page, "04-print")
    await page.go_back()

    # Record it as sent, with the police reference.
    await page.get_by_label(re.compile("Receiver's reference")).fill(f"WYP-{run}")
    await page.get_by_role("button", name="Record it as sent").click()
    await expect(page.locator(".notice")).to_have_text("Done: the case moved to submitted.")
    await expect(page.locator("h1")).to_contain_text("submitted")
    await expect(page.locator("table")).to_contain_text(f"WYP-{run}")
    await pages.look(page, "05-case-submitted")

    # A later flag about the same account: the case is ready again with a supplement.
    await publish_lines(pipeline.settings, [_flag(DANGER_LINE, danger)])
    await _until(page, "SUPPLEMENTARY to packet version 1")
    await expect(page.locator(".notice")).to_contain_text("it is now ready")
    await expect(page.locator("h1")).to_contain_text("ready")
    await expect(page.locator("#packet-text")).to_contain_text(f"WYP-{run}")
    await pages.look(page, "06-case-supplement")

    # A review: the NSPCC Helpline for a reviewer unsure; approved here while a colleague's tab
    # still shows it under review, whose dismissal is then refused and explained.
    colleague = await browser.new_page()
    await colleague.goto(f"{base}/console/cases/{review_1}")
    await page.goto(f"{base}/console/queue?status=review")
    await page.get_by_role("link", name=re.compile(f"Open case {review_1[:8]}")).click()
    await expect(page.locator(".guidance")).to_contain_text("0808 800 5000")
    await pages.look(page, "07-case-review")
    await page.get_by_role("button", name="Approve: refer it").click()
    await expect(page.locator(".notice")).to_have_text("Done: the case moved to ready.")
    await expect(page.locator("#packet-h")).to_have_text("Packet version 1")
    await colleague.get_by_label("Reason for dismissal (required)").fill("not grooming after all")
    await colleague.get_by_role("button", name="Dismiss the review").click()
    await expect(colleague.locator("#conflict")).to_contain_text(
        "Someone else moved this case first"
    )
    await expect(colleague.get_by_label("Reason for dismissal (required)")).to_have_count(0)
    await expect(colleague.locator("#conflict pre")).to_have_text("not grooming after all")
    await pages.look(colleague, "08-case-conflict")
    await colleague.close()

    # The other review is dismissed, with its reason.
    await page.goto(f"{base}/console/cases/{review_2}")
    reason = page.get_by_label("Reason for dismissal (required)")
    await reason.fill("an ordinary conversation between adults")
    await page.get_by_role("button", name="Dismiss the review").click()
    await expect(page.locator(".notice")).to_have_text("Done: the case moved to dismissed.")
    await expect(page.locator("table")).to_contain_text("an ordinary conversation between adults")

    # A forged form (its CSRF token changed) is refused and nothing moves.
    await page.goto(f"{base}/console/cases/{p0}")
    await page.locator("#move-submitted input[name=csrf]").evaluate(
        "input => { input.value = 'forged'; }"
    )
    await page.get_by_label(re.compile("Receiver's reference")).fill("FORGED-1")
    await page.get_by_role("button", name="Record it as sent").click()
    await expect(page.locator("h1")).to_have_text("Form refused")
    assert (await page.evaluate("document.readyState")) == "complete"
    await pages.look(page, "09-csrf-refused")
    await page.goto(f"{base}/console/cases/{p0}")
    await expect(page.locator("h1")).to_contain_text("ready")
    assert "FORGED-1" not in await page.content()

    # Sign out: the session is gone, the queue asks for a sign-in again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator(".notice")).to_have_text("You are signed out.")
    await page.goto(f"{base}/console/queue")
    await page.wait_for_url(f"{base}/console/sign-in")
    await page.close()

    # A viewer: the queue without identifiers, and no case.
    viewer = await browser.new_page()
    await _sign_in(viewer, base, viewer_key)
    await viewer.goto(f"{base}/console/queue?priority=P0")
    await expect(viewer.locator("#queue-rows")).to_contain_text(p0[:8])
    content = await viewer.content()
    for account in (danger, first_review, second_review, "acct-child-sample-4", "192.0.2.10"):
        assert account not in content
    assert f"/console/cases/{p0}" not in content
    await pages.look(viewer, "10-viewer-queue")
    refused = await viewer.goto(f"{base}/console/cases/{p0}")
    assert refused is not None
    assert refused.status == 403
    assert danger not in await viewer.content()
    await pages.look(viewer, "11-viewer-refused")
    await viewer.close()

    assert len(pages.checked) == 11
