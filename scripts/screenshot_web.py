"""Screenshot of `slmchat web` in headless chromium on the real default model.

    python scripts/screenshot_web.py        # writes screenshots/10-web-browser.png

Needs Debian's chromium and chromium-driver. Uses a throw-away data/config folder (your
conversations are neither read nor changed) and greedy decoding.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "screenshots" / "10-web-browser.png"
QUESTION = "What is the capital of France? Answer in one sentence."


def answered(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT status FROM messages WHERE role = 'assistant'").fetchall()
        return any(s in ("done", "length") for (s,) in rows)
    except sqlite3.Error:
        return False


def main() -> int:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    home = Path(tempfile.mkdtemp(prefix="slmchat-web-shot-"))
    env = {**os.environ, "SLMCHAT_DATA_DIR": str(home / "data"),
           "SLMCHAT_CONFIG_DIR": str(home / "config"), "SLMCHAT_GENERATION__TEMPERATURE": "0",
           "SLMCHAT_GENERATION__MAX_NEW_TOKENS": "64", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "slmchat", "web", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    url = proc.stdout.readline().split("open ", 1)[1].split()[0]
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,760",
                "--disable-dev-shm-usage", "--disable-background-networking"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        while "-first-byte" not in (driver.find_element(By.TAG_NAME, "body")
                                    .get_attribute("class") or ""):
            time.sleep(0.25)
        box = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        driver.execute_script("arguments[0].focus()", box)
        time.sleep(1)
        box.send_keys(QUESTION + Keys.ENTER)
        deadline = time.monotonic() + 180
        while not answered(home / "data" / "conversations.db") and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.5)  # the last frame reaches the browser
        OUT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(OUT))
        print(f"wrote {OUT}")
    finally:
        driver.quit()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
