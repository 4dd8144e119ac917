#!/usr/bin/env python3
"""Drives the demo page in headless Chromium through chromedriver (WebDriver over HTTP, stdlib
only): create the table, add a message with HTML in it, and report what the page shows.

    python3 demo_page.py URL SCREENSHOT.png MESSAGE

Prints one JSON object: the listed texts as the browser renders them, how many elements the
message's own markup produced inside the list (0 when escaped), any error shown, the
endpoint and user the page names, and its "How this page logs in" section (`chain`). Exits non-zero when the browser could not be driven.
"""

import base64
import json
import os
import socket
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

W3C_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Driver:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def start(self, profile):
        capabilities = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1000,800"],
            }}}}
        self.session = self.call("POST", "/session", capabilities)["sessionId"]

    def go(self, url):
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def find(self, css):
        found = self.call("POST", f"/session/{self.session}/elements", {"using": "css selector", "value": css})
        return [element[W3C_ELEMENT] for element in found]

    def wait_for(self, css, seconds=20):
        """The elements matching `css` once there are any: a click that submits a form returns
        before the next page has loaded."""
        deadline = time.monotonic() + seconds
        while True:
            found = self.find(css)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def click(self, element):
        self.call("POST", f"/session/{self.session}/element/{element}/click", {})

    def type(self, element, text):
        self.call("POST", f"/session/{self.session}/element/{element}/value", {"text": text})

    def text(self, element):
        return self.call("GET", f"/session/{self.session}/element/{element}/text")

    def screenshot(self, path):
        with open(path, "wb") as out:
            out.write(base64.b64decode(self.call("GET", f"/session/{self.session}/screenshot")))

    def quit(self):
        if self.session:
            try:
                self.call("DELETE", f"/session/{self.session}")
            except Exception:
                pass


def main():
    url, screenshot, message = sys.argv[1], sys.argv[2], sys.argv[3]
    port = free_port()
    driver_process = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
    driver = Driver(port)
    # The browser writes into its profile until it has quit: the profile is removed only after.
    profile = tempfile.mkdtemp(prefix="pwless-chromium-")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                driver.call("GET", "/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        driver.start(profile)
        driver.go(url)
        [create] = driver.wait_for("#create-table")
        driver.click(create)
        # The table exists once the page says there are no messages yet.
        if not driver.wait_for("#empty"):
            raise SystemExit("the page never showed an empty message list after creating the table")
        [field] = driver.find("#text")
        driver.type(field, message)
        [add] = driver.find("#add-message")
        driver.click(add)
        driver.wait_for("#messages li .text")
        result = {
            "texts": [driver.text(element) for element in driver.find("#messages li .text")],
            "markup_in_list": len(driver.find("#messages li .text *")),
            "errors": [driver.text(element) for element in driver.find("#error")],
            "endpoint": [driver.text(element) for element in driver.find("#endpoint")],
            "user": [driver.text(element) for element in driver.find("#user")],
            "chain": {key: [driver.text(element) for element in driver.find(f"#chain-{key}")]
                      for key in ("role", "mechanism", "token", "tls", "user")},
        }
        driver.screenshot(screenshot)
        print(json.dumps(result))
    finally:
        driver.quit()
        driver_process.terminate()
        driver_process.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
