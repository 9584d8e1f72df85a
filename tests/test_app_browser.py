"""A real browser (Debian's chromium, headless, via Playwright) on `python app.py --tiny`: upload the example, click
on the frame, see the mask overlay, ask a question, see the answer stream in; a second visitor sees none of it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from videorefer.demo.backend import TINY_FAMILIES
from videorefer.demo.testing import free_port

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-sync", "--disable-quic"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def server(request, tmp_path_factory):
    """The README's command, `python app.py --tiny FAMILY` (each family: `vl3`, `v1`), on a free port of 127.0.0.1."""
    port = free_port()
    log = tmp_path_factory.mktemp(f"server-{request.param}") / "app.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--tiny", request.param, "--port", str(port), "--scrub-frames", "8"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 150
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"app.py did not start:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url, log, request.param
    finally:
        process.terminate()
        process.wait(timeout=30)


def _frame_pixels(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#frame img").screenshot())).convert("RGB"), dtype=np.int16)


def _watch_the_answer(page) -> None:
    """Record the length of the chat's last answer each time the chat changes (`window.__answerLengths`)."""
    page.evaluate("""() => {
        window.__answerLengths = [];
        new MutationObserver(() => {
            const bots = document.querySelectorAll('#chat .message.bot, #chat [data-testid="bot"]');
            if (bots.length) window.__answerLengths.push(bots[bots.length - 1].innerText.length);
        }).observe(document.querySelector('#chat'), {subtree: true, childList: true, characterData: true});
    }""")


def _assert_the_answer_streams(page) -> None:
    """The answer watched by `_watch_the_answer` appeared and grew in at least two steps."""
    page.wait_for_function("() => window.__answerLengths.filter(n => n > 1).length > 0", timeout=60_000)
    page.wait_for_timeout(2000)
    lengths = page.evaluate("() => window.__answerLengths")
    assert len({n for n in lengths if n > 1}) >= 2, f"the answer did not stream: {lengths}"


def test_upload_click_ask_in_a_real_browser(server, tmp_path):
    server, log, tiny_family = server
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            page.goto(server)
            sync_api.expect(page.locator("#tiny-banner")).to_contain_text("TINY RANDOM MODELS")
            family = {"vl3": "VideoRefer-VL3", "v1": "VideoRefer-7B"}[tiny_family]
            sync_api.expect(page.locator("#model-card")).to_contain_text(f"Model: {family}")  # who answers
            page.locator("#video-upload input[type=file]").set_input_files(str(ROOT / "examples" / "bigbuckbunny.mp4"))
            sync_api.expect(page.locator("#frame-caption")).to_contain_text("Frame 0 of 132", timeout=60_000)
            before = _frame_pixels(page)
            image = page.locator("#frame img")
            size = image.bounding_box()
            image.click(position={"x": size["width"] * 0.37, "y": size["height"] * 0.53})
            sync_api.expect(page.locator("#legend")).to_contain_text("<object0>", timeout=60_000)
            page.wait_for_timeout(500)
            after = _frame_pixels(page)
            changed = np.abs(after - before).sum(-1) > 30
            assert changed.mean() > 0.01, "no mask overlay appeared after the click"
            blue = np.array([31, 119, 180])  # <object0>'s outline colour
            assert (np.abs(after - blue).sum(-1) < 40).sum() > 50

            _watch_the_answer(page)
            page.locator("#question textarea").fill("What is <object0> doing?")
            page.locator("#send").click()
            sync_api.expect(page.locator("#chat")).to_contain_text("<object0>", timeout=60_000)
            _assert_the_answer_streams(page)
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'demo.png'}")
            assert (tmp_path / "demo.png").stat().st_size > 10_000

            _track_watch_and_round_trip_the_regions(page, sync_api, tmp_path)

            other = browser.new_context().new_page()  # another visitor: fresh state
            other.goto(server)
            sync_api.expect(other.locator("#legend")).to_contain_text("No objects yet", timeout=30_000)
            assert "<object0>" not in other.locator("#chat").inner_text()
            assert other.locator("#frame img").count() == 0  # nor the first visitor's video

            page.close()  # the first visitor leaves: their GPU caches are freed (demo.unload)
            deadline = time.time() + 30
            while "left: answer stopped, GPU caches freed" not in log.read_text() and time.time() < deadline:
                time.sleep(0.5)
            assert "left: answer stopped, GPU caches freed" in log.read_text()
        finally:
            browser.close()


def test_find_by_name_and_image_mode_in_a_real_browser(server, tmp_path):
    """Type a name and press Find (tiny mode: the default threshold finds boxes, 0.9 finds none); then upload a photo,
    click on it and ask."""
    server, _, _ = server
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    bunny = Image.open(io.BytesIO(_first_frame_png())).resize((320, 180))
    bunny.save(tmp_path / "photo.png")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            page.goto(server)
            page.locator("#video-upload input[type=file]").set_input_files(str(ROOT / "examples" / "bigbuckbunny.mp4"))
            expect(page.locator("#frame-caption")).to_contain_text("Frame 0 of 132", timeout=60_000)
            find_text, threshold = page.locator("#find-text textarea, #find-text input").first, \
                page.locator("#find-threshold input[type=number]")
            threshold.fill("0.9")
            threshold.press("Enter")
            find_text.fill("unicorn")
            page.locator("#find").click()
            expect(page.get_by_text("no object matching 'unicorn' on this frame").first).to_be_visible(timeout=60_000)
            expect(page.locator("#legend")).to_contain_text("No objects yet")
            page.screenshot(path=str(tmp_path / "find-miss.png"), full_page=True)

            before = _frame_pixels(page)
            threshold.fill("0.35")
            threshold.press("Enter")
            find_text.fill("the rabbit")
            page.locator("#find").click()
            expect(page.locator("#legend")).to_contain_text("the rabbit", timeout=60_000)
            expect(page.get_by_text("matching 'the rabbit'").first).to_be_visible(timeout=10_000)
            page.wait_for_timeout(500)
            changed = np.abs(_frame_pixels(page) - before).sum(-1) > 30
            assert changed.mean() > 0.01, "no mask overlay appeared after Find"
            page.screenshot(path=str(tmp_path / "find.png"), full_page=True)

            photo = browser.new_context().new_page()  # a visitor with a photo
            photo.set_viewport_size({"width": 1400, "height": 1700})
            photo.goto(server)
            photo.locator("#video-upload input[type=file]").set_input_files(str(tmp_path / "photo.png"))
            expect(photo.locator("#frame-caption")).to_contain_text("Image 320×180", timeout=60_000)
            image = photo.locator("#frame img")
            size = image.bounding_box()
            image.click(position={"x": size["width"] * 0.37, "y": size["height"] * 0.53})
            expect(photo.locator("#legend")).to_contain_text("<object0>", timeout=60_000)
            photo.locator("#question textarea").fill("What is <object0>?")
            photo.locator("#send").click()
            expect(photo.locator("#chat")).to_contain_text("What is", timeout=60_000)
            photo.wait_for_function(
                "() => { const b = document.querySelectorAll('#chat .message.bot, #chat [data-testid=\"bot\"]');"
                " return b.length && b[b.length - 1].innerText.trim().length > 1; }", timeout=60_000)
            photo.screenshot(path=str(tmp_path / "image.png"), full_page=True)
            print(f"screenshots: {tmp_path / 'find.png'} {tmp_path / 'find-miss.png'} {tmp_path / 'image.png'}")
        finally:
            browser.close()


def _first_frame_png() -> bytes:
    from videorefer.video_io import read_frames

    buffer = io.BytesIO()
    Image.fromarray(read_frames(str(ROOT / "examples" / "bigbuckbunny.mp4"), [60])[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def _track_watch_and_round_trip_the_regions(page, sync_api, tmp_path) -> None:
    """Track: the tracked-mask video plays in the browser. Download the regions, remove the object, upload the file:
    the object comes back. A regions file of another video is refused with a message."""
    expect_folded = page.locator("#tracked-video")
    sync_api.expect(expect_folded).to_be_hidden()  # folded until there is a tracked video
    page.locator("#track").click()
    sync_api.expect(expect_folded).to_be_visible(timeout=120_000)  # opened by itself when tracking finishes
    video = page.locator("#tracked-video video")
    sync_api.expect(video).to_have_count(1, timeout=120_000)
    page.wait_for_function("""() => {
        const v = document.querySelector('#tracked-video video');
        return v && v.readyState >= 1 && v.duration > 0;
    }""", timeout=60_000)
    duration, error = page.evaluate("""() => {
        const v = document.querySelector('#tracked-video video');
        return [v.duration, v.error ? v.error.code : null];
    }""")
    assert 5.0 < duration < 5.6 and error is None  # bigbuckbunny: 132 frames at 25 fps
    played = page.evaluate("""async () => {
        const v = document.querySelector('#tracked-video video');
        v.muted = true;
        await v.play();
        await new Promise(r => setTimeout(r, 1500));
        v.pause();
        return [v.currentTime, v.error ? v.error.code : null, v.videoWidth];
    }""")
    assert played[0] > 0.3 and played[1] is None and played[2] == 960, f"the video did not play: {played}"
    page.screenshot(path=str(tmp_path / "tracked.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'tracked.png'}")

    link = page.locator("#regions-download a").first
    sync_api.expect(link).to_be_visible(timeout=30_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "regions.json"
    download.value.save_as(saved)
    doc = json.loads(saved.read_text())
    assert doc["total_frames"] == 132 and doc["objects"][0]["name"] == "object 0"
    page.locator("#object-select").click()  # nothing to choose but <object0>: remove it
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Remove object").click()
    sync_api.expect(page.locator("#legend")).to_contain_text("No objects yet", timeout=30_000)
    page.locator("#regions-upload input[type=file]").set_input_files(str(saved))
    sync_api.expect(page.locator("#legend")).to_contain_text("<object0>", timeout=60_000)
    sync_api.expect(page.locator("#legend")).to_contain_text("tracked", timeout=10_000)

    other = tmp_path / "other.json"
    other.write_text(json.dumps({**doc, "width": 64, "height": 48}))
    page.locator("#regions-upload button[aria-label='Clear']").first.click()
    page.locator("#regions-upload input[type=file]").set_input_files(str(other))
    sync_api.expect(page.get_by_text("is for a 64×48 video")).to_be_visible(timeout=30_000)


def _in_view(page, selector: str) -> bool:
    """Whether the element lies wholly inside the first viewport (the page scrolled to the top)."""
    page.evaluate("() => window.scrollTo(0, 0)")
    box, size = page.locator(selector).first.bounding_box(), page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= size["height"] \
        and box["x"] + box["width"] <= size["width"]


def _no_sideways_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
                         " && document.body.scrollWidth <= document.documentElement.clientWidth")


def test_one_view_one_click_and_a_phone(server, tmp_path):
    """A laptop (1366×768): an example's one-click question loads the video, shows its saved masks and streams the
    answer; after a click on the frame, the frame and the question box are both in the first view (also at
    1920×1080). A phone (390×844): one column, no sideways scroll, a tap on the frame makes an object."""
    server, _, _ = server
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    shots = {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(server)
            start = page.locator(".quick-start").filter(has_text="Big Buck Bunny")
            expect(start).to_contain_text("What is the bunny doing?")
            expect(page.locator("#chat")).to_be_attached()
            assert _in_view(page, ".quick-start")
            _watch_the_answer(page)
            before_click = time.time()
            start.click()  # the one click
            expect(page.locator("#frame-caption")).to_contain_text("Frame 60 of 132", timeout=60_000)  # saved frame
            expect(page.locator("#legend")).to_contain_text("bunny", timeout=60_000)
            expect(page.locator("#chat")).to_contain_text("What is", timeout=60_000)
            _assert_the_answer_streams(page)
            assert page.locator("#question textarea").input_value() == ""  # asked, not left in the box
            print(f"one click to an answer: {time.time() - before_click:.1f} s")

            page.locator("#new-object").click()
            expect(page.locator("#legend")).to_contain_text("<object2>", timeout=30_000)
            image, before = page.locator("#frame img"), _frame_pixels(page)
            size = image.bounding_box()
            image.click(position={"x": size["width"] * 0.5, "y": size["height"] * 0.3})
            page.wait_for_function("""() => !document.querySelector('#frame .pending, #frame .generating')""")
            deadline = time.time() + 60
            while (np.abs(_frame_pixels(page) - before).sum(-1) > 30).mean() < 0.01 and time.time() < deadline:
                page.wait_for_timeout(500)  # the new object's mask is drawn over the frame
            assert (np.abs(_frame_pixels(page) - before).sum(-1) > 30).mean() >= 0.01, "the click made no mask"
            for width, height in ((1366, 768), (1920, 1080)):
                page.set_viewport_size({"width": width, "height": height})
                page.wait_for_timeout(500)
                assert _in_view(page, "#frame img") and _in_view(page, "#question textarea") \
                    and _in_view(page, "#send"), f"frame and question box not in one view at {width}×{height}"
                assert _in_view(page, "#legend")  # the objects too
                assert not page.locator("#tracked-video").is_visible()  # nothing tracked yet: folded
                shots[f"{width}x{height}"] = tmp_path / f"page-{width}x{height}.png"
                page.screenshot(path=str(shots[f"{width}x{height}"]))

            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                        device_scale_factor=2).new_page()
            phone.goto(server)
            assert _no_sideways_scroll(phone)
            phone.locator("#video-upload input[type=file]").set_input_files(str(ROOT / "examples" / "city.mp4"))
            expect(phone.locator("#frame-caption")).to_contain_text("Frame 0 of 116", timeout=60_000)
            image = phone.locator("#frame img")
            image.scroll_into_view_if_needed()
            size = image.bounding_box()
            assert size["width"] > 300  # the frame takes the width of the screen
            image.tap(position={"x": size["width"] * 0.5, "y": size["height"] * 0.5})
            expect(phone.locator("#legend")).to_contain_text("<object0>", timeout=60_000)
            assert _no_sideways_scroll(phone)
            frame_box, chat_box = image.bounding_box(), phone.locator("#chat").bounding_box()
            assert chat_box["y"] > frame_box["y"] + frame_box["height"]  # one column: the frame, then the chat
            shots["390x844"] = tmp_path / "page-390x844.png"
            phone.screenshot(path=str(shots["390x844"]), full_page=True)
        finally:
            browser.close()
    print("screenshots:", *shots.values())
    assert all(path.stat().st_size > 10_000 for path in shots.values())
