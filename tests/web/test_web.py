"""`slmchat web`: the app in a real headless browser (Debian's chromium), offline."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from slmchat.cli import main
from slmchat.web.page import offline_template

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


@pytest.fixture
def web(tiny_llama_dir: Path, isolated_dirs: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "SLMCHAT_THREADS": "1", "SLMCHAT_GENERATION__MAX_NEW_TOKENS": "16"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "slmchat", "web", "--model", str(tiny_llama_dir), "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, proc.stderr.read() if proc.stderr else line
        yield proc, line.split("open ", 1)[1].split()[0]
    finally:
        if proc.poll() is None:
            proc.terminate()  # a clean stop also ends the tabs' app processes
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_web_refuses_other_machines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SSH tunnel" in err[0]


def test_page_template_has_no_remote_resources() -> None:
    import textual_serve

    original = (Path(textual_serve.__file__).parent / "templates" / "app_index.html").read_text()
    assert "fonts.googleapis.com" in original  # what we replace
    page = offline_template(original)
    assert "googleapis" not in page and 'href="https://' not in page and 'src="https://' not in page
    assert "fonts/RobotoMono-VariableFont_wght.ttf" in page


def test_served_page_is_local_and_the_websocket_is_same_origin_only(web) -> None:
    _, url = web
    page = httpx.get(url).text
    assert "googleapis" not in page and "https://" not in page.replace("http://www.w3.org", "")
    port = int(url.rsplit(":", 1)[1])
    for origin, allowed in (("http://evil.example", False), (url, True)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall((f"GET /ws?width=80&height=24 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          f"Origin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            status = sock.recv(4096).split(b"\r\n", 1)[0]
        assert (b" 101 " in status) if allowed else (b" 403 " in status), (origin, status)


def _answered(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT status, content FROM messages WHERE role = 'assistant'")
            return any(status in ("done", "length") and content for status, content in rows)
    except sqlite3.Error:
        return False


@needs_browser
def test_browser_loads_the_app_and_gets_an_answer(web, isolated_dirs: Path, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    proc, url = web
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,800", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(url)
        deadline = time.monotonic() + 90
        while "-first-byte" not in (driver.find_element(By.TAG_NAME, "body")
                                    .get_attribute("class") or ""):
            assert time.monotonic() < deadline, "the app never drew in the browser"
            time.sleep(0.25)
        box = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        driver.execute_script("arguments[0].focus()", box)
        time.sleep(1)  # the app's input takes focus once mounted
        box.send_keys("What is the capital of France?")
        box.send_keys(Keys.ENTER)
        db = isolated_dirs / "data" / "conversations.db"
        while not _answered(db):
            assert time.monotonic() < deadline, "no answer was stored"
            time.sleep(0.5)
        time.sleep(1)
        shot = tmp_path / "web.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        urls = set()
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.add(message["params"]["request"]["url"])
            elif message["method"] == "Network.webSocketCreated":
                urls.add(message["params"]["url"])
        host = url.split("//", 1)[1]
        assert urls and all(u.split("//", 1)[1].startswith(host) for u in urls), urls
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "no app process runs behind the tab"
        proc.send_signal(signal.SIGTERM)  # with the tab still open
        assert proc.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, alive
    finally:
        driver.quit()
