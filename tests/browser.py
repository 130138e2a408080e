"""Open a page in headless Chromium, collect console errors, take a screenshot.

Talks the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, messages
separated by NUL bytes), so it needs no websocket library. Used by the tests and by anyone who
wants to check what a person would see; nothing here is needed to serve the maps.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pattogis.errors import MissingDataError

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


@dataclass
class PageReport:
    """What the browser saw: errors (exceptions, console.error, failed loads), warnings, values
    of the evaluated expressions, and the screenshot path."""

    url: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    screenshot: Path | None = None
    requests: list[str] = field(default_factory=list)


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], rfd: int, wfd: int) -> None:
        self.proc, self.rfd, self.wfd = proc, rfd, wfd
        self.next_id = 0
        self.msgs: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.rfd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                self.msgs.put(json.loads(raw))

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {method} within {timeout} s")
            m = self.msgs.get(timeout=left)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, name: str, timeout: float) -> bool:
        if any(e.get("method") == name for e in self.events):
            return True
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                m = self.msgs.get(timeout=left)
            except queue.Empty:
                return False
            self.events.append(m)
            if m.get("method") == name:
                return True
        return False

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(self.msgs.get(timeout=left))
            except queue.Empty:
                return


@dataclass
class Click:
    """An action of :func:`check_page`: a real mouse click (the browser's own input events:
    move, press and release of the left button, as a user's hand would make them, with the
    browser's hit testing) at the viewport point ``[x, y]`` (CSS px) that the JS expression
    ``at`` gives; ``at`` may also set page variables (it runs just before the click).
    ``count``: 2 for a double click (two clicks, the second with clickCount 2: the browser
    fires dblclick), ``interval_s`` apart (a hand takes about 0.1-0.2 s)."""

    at: str
    count: int = 1
    interval_s: float = 0.0


def _click(pipe: _Pipe, sid: str, click: Click, report: PageReport) -> None:
    r = pipe.send("Runtime.evaluate", {"expression": click.at, "returnByValue": True,
                                       "awaitPromise": True}, session=sid)
    xy = r.get("result", {}).get("value")
    if "exceptionDetails" in r or not (isinstance(xy, list) and len(xy) == 2
                                       and all(isinstance(v, (int, float)) for v in xy)):
        report.errors.append(f"click: no point from {click.at}: {r.get('exceptionDetails', xy)}")
        return
    x, y = float(xy[0]), float(xy[1])
    pipe.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y}, session=sid)
    for n in range(1, click.count + 1):
        if n > 1:
            time.sleep(click.interval_s)
        for kind in ("mousePressed", "mouseReleased"):
            pipe.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                   "buttons": 1 if kind == "mousePressed" else 0,
                                                   "clickCount": n}, session=sid)


def _console_text(params: dict[str, Any]) -> str:
    parts = []
    for a in params.get("args", []):
        parts.append(str(a.get("value", a.get("description", ""))))
    return " ".join(parts)


def check_page(url: str, screenshot: str | Path | None = None, *, width: int = 1280,
               height: int = 860, settle_s: float = 1.5, evaluate: list[str] | None = None,
               actions: list[str | Click] | None = None, load_timeout_s: float = 60.0) -> PageReport:
    """Load ``url`` in a fresh headless Chromium profile and report what went wrong.

    ``actions``: JS run after load (e.g. zoom the map), or :class:`Click` (a real mouse click),
    each followed by ``settle_s`` seconds;
    ``evaluate``: JS expressions whose values are returned (JSON-able) after the actions.
    Errors are uncaught exceptions, ``console.error`` calls and failed resource loads.
    """
    exe = chromium_path()
    if exe is None:
        raise MissingDataError("Chromium not found: apt-get install chromium")
    report = PageReport(url)
    udd = tempfile.mkdtemp(prefix="pattogis-chromium-")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    # the browser reads commands on fd 3 and writes answers on fd 4
    cmd = ["/bin/bash", "-c", f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', "chromium", exe,
           *FLAGS, f"--user-data-dir={udd}", "--remote-debugging-pipe",
           f"--window-size={width},{height}", "about:blank"]
    proc = subprocess.Popen(cmd, pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(proc, from_chrome_r, to_chrome_w)
    try:
        targets = pipe.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        sid = pipe.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})[
            "sessionId"]
        for dom in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            pipe.send(dom, session=sid)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=sid)
        pipe.events.clear()
        nav = pipe.send("Page.navigate", {"url": url}, session=sid)
        if nav.get("errorText"):
            report.errors.append(f"navigation: {nav['errorText']}")
        if not pipe.wait_event("Page.loadEventFired", load_timeout_s):
            report.errors.append(f"page did not finish loading within {load_timeout_s} s")
        pipe.drain(settle_s)
        for js in actions or []:
            if isinstance(js, Click):
                _click(pipe, sid, js, report)
                pipe.drain(settle_s)
                continue
            r = pipe.send("Runtime.evaluate", {"expression": js, "awaitPromise": True}, session=sid)
            if "exceptionDetails" in r:
                report.errors.append(f"action failed: {js}: {r['exceptionDetails'].get('text')}")
            pipe.drain(settle_s)
        for js in evaluate or []:
            r = pipe.send("Runtime.evaluate", {"expression": js, "returnByValue": True,
                                               "awaitPromise": True}, session=sid)
            report.values.append(r.get("result", {}).get("value"))
        if screenshot is not None:
            shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=sid)
            path = Path(screenshot)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(shot["data"]))
            report.screenshot = path
        pipe.drain(0.2)
        for e in pipe.events:
            meth, p = e.get("method"), e.get("params", {})
            if meth == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                report.errors.append("exception: " + str(d.get("exception", {}).get(
                    "description", d.get("text"))))
            elif meth == "Runtime.consoleAPICalled":
                if p.get("type") in ("error", "assert"):
                    report.errors.append("console.error: " + _console_text(p))
                elif p.get("type") == "warning":
                    report.warnings.append(_console_text(p))
            elif meth == "Log.entryAdded":
                entry = p.get("entry", {})
                text = f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
                if entry.get("level") == "error":
                    report.errors.append(text)
                elif entry.get("level") == "warning":
                    report.warnings.append(text)
            elif meth == "Network.requestWillBeSent":
                report.requests.append(p.get("request", {}).get("url", ""))
            elif meth == "Network.loadingFailed":
                report.errors.append(f"network: {p.get('errorText')} ({p.get('type')})")
        # the browser may close before answering
        with contextlib.suppress(Exception):
            pipe.send("Browser.close", timeout=5)
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for fd in (from_chrome_r, to_chrome_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(udd, ignore_errors=True)
    return report


def click_tile_feature_js(key: str, margin: tuple[int, int, int, int] = (0, 0, 0, 0),
                          events: tuple[str, ...] = ("mousedown", "mouseup", "click")) -> str:
    """JS that clicks, as a user would (the element at the point, mouse events there), the first
    drawn feature of the vector-tile layer ``pattogis.layers[key]`` whose centre is inside the
    map (less ``margin`` px: top, right, bottom, left) and on top at that point; it leaves
    ``window.pgTileClick`` = the feature's properties, or a string saying why nothing was
    clicked. ``events``: the mouse events sent (a hover: mouseover, mousemove). Needs the SVG
    renderer (paths), as the pages' point and site tiles use."""
    top, right, bottom, left = margin
    return f"""(function () {{
  var vg = pattogis.layers[{json.dumps(key)}].getLayers()[0];
  var r = pattogis.map.getContainer().getBoundingClientRect();
  window.pgTileClick = 'no feature on top inside the map';
  var tiles = Object.values(vg._vectorTiles);
  for (var i = 0; i < tiles.length; i++) {{
    for (var k in tiles[i]._layers) {{
      var l = tiles[i]._layers[k];
      if (!l._path) {{ continue; }}
      var b = l._path.getBoundingClientRect(), x = b.left + b.width / 2, y = b.top + b.height / 2;
      if (x < r.left + {left} || y < r.top + {top} || x > r.right - {right} ||
          y > r.bottom - {bottom}) {{ continue; }}
      if (document.elementFromPoint(x, y) !== l._path) {{ continue; }}
      {json.dumps(list(events))}.forEach(function (ty) {{
        l._path.dispatchEvent(new MouseEvent(ty, {{bubbles: true, cancelable: true,
                                                   clientX: x, clientY: y, view: window}}));
      }});
      window.pgTileClick = l.properties;
      return true;
    }}
  }}
  return false;
}})()"""


def tile_features_js(key: str) -> str:
    """JS giving the properties of every feature drawn by the vector-tile layer
    ``pattogis.layers[key]`` (a feature cut by tile edges appears once per tile)."""
    return (f"Object.values(pattogis.layers[{json.dumps(key)}].getLayers()[0]._vectorTiles)"
            ".reduce(function (a, t) { return a.concat(Object.values(t._layers).map("
            "function (l) { return l.properties; })); }, [])")
