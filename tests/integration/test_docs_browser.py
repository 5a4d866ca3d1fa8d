"""A person at /docs, played by a real browser: Debian's Chromium, driven by Playwright.

The gateway serves /docs with no internet access (the assets are its own), the page lists the
catalog's typed routes, and "Try it out" on ``POST /orders`` with the example body reaches the
real worker over the real broker and shows its 201. Set ``RPCGW_DOCS_SCREENSHOT`` to a path to
keep the screenshot (docs/images/docs-orders.png is made that way).
"""

from __future__ import annotations

import os
import shutil

from playwright.async_api import FloatRect as Clip
from playwright.async_api import async_playwright

from gateway.app import create_app

from .harness import Topics, serving, working

CHROMIUM = "chromium"
# As the machine's probe runs it: no sandbox as root, and no background traffic to Google's hosts.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def test_a_person_calls_post_orders_from_docs_and_sees_the_workers_201(topics: Topics) -> None:
    assert shutil.which(CHROMIUM), "Debian's chromium is needed (apt-get install chromium; .ci/run does)"
    app = create_app(topics.settings(), topics.kafka_settings())
    async with working(topics), serving(app) as url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=shutil.which(CHROMIUM), args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1400})
            outside: list[str] = []
            page.on(
                "request",
                lambda request: None if request.url.startswith(url) else outside.append(request.url),
            )
            await page.goto(f"{url}/docs")
            operation = page.locator(
                ".opblock-post", has=page.locator(".opblock-summary-path[data-path='/orders']")
            )
            await operation.locator(".opblock-summary").click()
            await operation.locator(".try-out__btn").click()
            body = operation.locator("textarea.body-param__text")
            example = await body.input_value()
            assert '"customer_id": "ada"' in example  # the model's example, filled in by the page
            await body.fill(example)
            await operation.locator(".execute").click()
            status = operation.locator(".live-responses-table tbody td.response-col_status")
            await status.wait_for(timeout=20_000)
            assert (await status.inner_text()).strip() == "201"
            response = await operation.locator(
                ".live-responses-table .response-col_description pre"
            ).first.inner_text()
            assert '"order_id"' in response
            keep = os.environ.get("RPCGW_DOCS_SCREENSHOT")
            top = await operation.bounding_box()
            live = await operation.locator(".live-responses-table").first.bounding_box()
            assert top is not None
            assert live is not None
            # The operation from its summary down to the worker's live 201 (the static list follows).
            height = live["y"] + live["height"] - top["y"]
            scrolled = float(await page.evaluate("window.scrollY"))  # boxes are viewport-relative
            clip = Clip(x=top["x"], y=top["y"] + scrolled, width=top["width"], height=height)
            shot = await page.screenshot(path=keep, clip=clip, full_page=True)
            assert len(shot) > 10_000
        finally:
            await browser.close()
    assert outside == [], f"the docs page reached outside the gateway: {outside}"
