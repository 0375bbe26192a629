"""The console in a real browser (issue 28, item 4).

Run by tests/it/console_browser.rs against a running engine it set up:
three dead deliveries of webhook `h` (its receiver now answers 200), one of
them an event whose payload holds a <script>, and a second webhook `other`.
Drives Debian's Chromium through Playwright (its own browser download is
not reachable here). Screenshots of every page go to --shots.

Exits non-zero, naming the step, when anything is not as it should be.
"""

import argparse
import http.server
import pathlib
import sys
import threading
import time

from playwright.sync_api import expect, sync_playwright

STEP = ["start"]


def step(name):
    STEP[0] = name
    print(f"step: {name}", flush=True)


def wait_until(what, probe, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def attacker_site(target):
    """A page on another origin (another port of 127.0.0.1: same site,
    other origin) that posts a form to the console as soon as it loads."""
    page = f"""<!doctype html><html><body>
<form id="f" method="post" action="{target}">
<input name="note" value="pwned"></form>
<script>document.getElementById('f').submit()</script>
</body></html>""".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--admin-key", required=True)
    ap.add_argument("--publisher-key", required=True)
    ap.add_argument("--policy-file", required=True)
    ap.add_argument("--shots", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    base = a.base
    shots = pathlib.Path(a.shots)
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=a.chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(15000)
        page = context.new_page()
        page.on("dialog", lambda d: d.accept())
        # Script errors and anything the Content-Security-Policy blocked
        # (a 4xx the test asks for is not an error of the page).
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "console",
            lambda m: m.type == "error"
            and not m.text.startswith("Failed to load resource")
            and errors.append(m.text),
        )

        def shot(name):
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        step("a publisher key is refused")
        page.goto(f"{base}/console")
        expect(page).to_have_url(f"{base}/console/login?next=%2Fconsole")
        shot("login")
        page.fill("#credential", a.publisher_key)
        page.click("button[type=submit]")
        expect(page.get_by_test_id("flash")).to_contain_text(
            "cannot sign in: the console needs role admin"
        )
        assert not context.cookies(), "no session for a publisher"

        step("sign in")
        page.fill("#credential", a.admin_key)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{base}/console")
        cookie = [c for c in context.cookies() if c["name"] == "aion_console"][0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
        expect(page.get_by_test_id("actor")).to_have_text("tester")
        expect(page.get_by_test_id("depth-dead")).to_have_text("3")
        shot("overview")

        step("find a dead delivery and open its attempts")
        page.click("nav >> text=Dead letters")
        expect(page).to_have_url(f"{base}/console/dead")
        rows = page.locator("tr[data-delivery]")
        expect(rows).to_have_count(3)
        shot("dead-letters")
        first = rows.first.get_attribute("data-delivery")
        page.click(f"a[href='/console/deliveries/{first}']")
        attempts = page.get_by_test_id("attempts")
        expect(attempts).to_contain_text("500")
        expect(page.get_by_test_id("status")).to_have_text("dead")
        shot("delivery-dead")

        step("replay it and see it succeed at the receiver")
        page.get_by_test_id("replay").click()
        expect(page.get_by_test_id("flash")).to_contain_text("replayed")

        def succeeded():
            page.reload()
            return page.get_by_test_id("status").inner_text() == "succeeded"

        wait_until("the replayed delivery to succeed", succeeded)
        expect(attempts).to_contain_text("200")
        shot("delivery-succeeded")

        step("bulk-replay by filter")
        page.goto(f"{base}/console/dead?webhook=h")
        expect(rows).to_have_count(2)
        page.get_by_test_id("bulk-replay").click()
        expect(page.get_by_test_id("flash")).to_contain_text("2 dead deliveries replayed.")

        def none_dead():
            page.goto(f"{base}/console/deliveries?webhook=h&status=succeeded")
            return page.locator("tr[data-delivery]").count() == 3

        wait_until("the bulk-replayed deliveries to succeed", none_dead)
        shot("deliveries")

        step("disable and enable a webhook")
        page.click("nav >> text=Webhooks")
        row = page.locator("tr[data-webhook='other']")
        row.locator("input[name=note]").fill("receiver migrating")
        row.get_by_test_id("disable").click()
        expect(page.get_by_test_id("flash")).to_have_text("Webhook other disabled.")
        expect(row.get_by_test_id("state")).to_have_text("disabled")
        expect(row.get_by_test_id("note")).to_contain_text("receiver migrating")
        shot("webhooks-disabled")
        row.get_by_test_id("enable").click()
        expect(page.get_by_test_id("flash")).to_have_text("Webhook other enabled.")
        expect(row.get_by_test_id("state")).to_have_text("active")
        shot("webhooks")

        step("a payload holding <script> is shown as text")
        page.goto(f"{base}/console/deliveries?event_id=evt-script")
        page.locator("tr[data-delivery] a").first.click()
        page.click("a[href='/console/events/evt-script']")
        payload = page.get_by_test_id("payload")
        expect(payload).to_contain_text("<script>window.__pwned=1</script>")
        assert page.evaluate("window.__pwned") is None, "the payload's script ran"
        scripts = page.evaluate(
            "Array.from(document.scripts).map(s => s.getAttribute('src'))"
        )
        assert scripts == ["/console/static/console.js"], scripts
        shot("event")

        step("see a reload error")
        policy = pathlib.Path(a.policy_file)
        good = policy.read_text()
        policy.write_text(good + "\nwebhooks: [this is not: valid\n")
        page.click("nav >> text=Policy")
        page.get_by_test_id("reload").click()
        flash = page.get_by_test_id("flash")
        expect(flash).to_have_class("flash bad")
        expect(page.get_by_test_id("reload-errors")).to_be_visible()
        shot("policy-reload-error")
        policy.write_text(good)
        page.get_by_test_id("reload").click()
        expect(page.get_by_test_id("flash")).to_have_class("flash ok")
        shot("policy")

        step("sources and audit pages")
        page.click("nav >> text=Sources")
        shot("sources")
        page.goto(f"{base}/console/audit?actor=tester")
        for action in ["console_sign_in", "replay_delivery", "bulk_replay", "disable_webhook", "enable_webhook"]:
            expect(page.locator("main table")).to_contain_text(action)
        shot("audit")

        step("a cross-site form post is refused")
        server, attacker = attacker_site(f"{base}/console/webhooks/other/disable")
        try:
            cross = context.new_page()
            with cross.expect_navigation(url=f"{base}/console/webhooks/other/disable"):
                cross.goto(attacker)
            expect(cross.get_by_test_id("error")).to_contain_text("Refused")
            cross.screenshot(path=str(shots / "cross-site-refused.png"))
            cross.close()
        finally:
            server.shutdown()
        page.goto(f"{base}/console/webhooks")
        expect(
            page.locator("tr[data-webhook='other']").get_by_test_id("state")
        ).to_have_text("active")

        step("sign out")
        page.click("header button[type=submit]")
        expect(page).to_have_url(f"{base}/console/login")
        page.goto(f"{base}/console/webhooks")
        expect(page).to_have_url(f"{base}/console/login?next=%2Fconsole%2Fwebhooks")

        assert not errors, f"browser console errors: {errors}"
        browser.close()
    print("all console steps passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - name the step, then fail
        print(f"FAILED at step {STEP[0]!r}: {e}", file=sys.stderr)
        sys.exit(1)
