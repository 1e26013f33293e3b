"""Debian's headless chromium driven over the DevTools protocol (python3-websocket): open a page,
evaluate JavaScript in it, collect what its console and network log say, take a screenshot.

    with Browser(tmp_path) as b:
        b.open("http://127.0.0.1:9464/")
        b.wait_for("document.querySelector('#slos .card') !== null")
        b.errors()  # console errors, uncaught exceptions, failed loads
"""
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import websocket

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Browser:
    def __init__(self, tmp_path, width=1200, height=900):
        if not os.path.exists(CHROMIUM):
            raise RuntimeError("chromium is missing: run deploy/install-deps.sh (Debian package "
                               "chromium)")
        n = 0
        while (tmp_path / f"chromium-{n}").exists():  # a fresh profile for each browser
            n += 1
        self.dir = tmp_path / f"chromium-{n}"
        self.dir.mkdir()
        self.log = open(tmp_path / f"chromium-{n}.log", "w")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--mute-audio",
             f"--user-data-dir={self.dir}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ws = None
        try:
            port = self._port(60)
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                     timeout=10))
            page = next(p for p in pages if p["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30,
                                                  suppress_origin=True)
            self.ids = itertools.count(1)
            self.events = []
            for domain in ("Runtime", "Log", "Page"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.close()  # never leave a browser running
            raise

    def _port(self, timeout):
        deadline = time.time() + timeout
        path = self.dir / "DevToolsActivePort"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited {self.proc.returncode}")
            if path.exists() and path.read_text().strip():
                return int(path.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def call(self, method, **params):
        """Sends one command and returns its result; events that arrive meanwhile are kept."""
        my_id = next(self.ids)
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def open(self, url):
        self.call("Page.navigate", url=url)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expr, timeout=30):
        """The first truthy value of expr, evaluated every 50 ms (an exception counts as not yet),
        or None after timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                v = self.eval(expr)
            except RuntimeError:  # the page is still loading: its elements are not there yet
                v = None
            if v:
                return v
            time.sleep(0.05)
        return None

    def errors(self):
        """Console errors, uncaught exceptions and log errors (failed loads) seen so far."""
        self.eval("0")  # drain the events sent before now
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                  for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p["exceptionDetails"])[:500])
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append("log: " + p["entry"]["text"] + " " + p["entry"].get("url", ""))
        return out

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self):
        try:
            if self.ws:
                self.ws.close()
        finally:  # the browser and its helpers (renderer, zygote) are one process group
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                self.proc.wait()
            self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
