#!/usr/bin/python3
"""Load a wobble report in headless Chromium (Debian `chromium`) and check it
as a reader's browser would see it, over the DevTools protocol on a pipe
(--remote-debugging-pipe: no port, no extra Python package):

- no console message of level error or warning, no uncaught exception, no
  Content-Security-Policy violation;
- no network request: every request the page makes is the report itself or
  a data: URI;
- at 1280 px wide, a full-page screenshot in which every plot area
  (svg.plot > rect.area) holds coloured pixels (the data drawn in the
  palette's colours), and no plot is empty or collapsed;
- at 390 px (a phone) the page does not scroll sideways (wide tables scroll
  inside their own box);
- print to PDF succeeds (a %PDF file of at least one page).

- the sort script works: a click on a column header reorders the rows.

usage: report_browser.py [--screenshots DIR] REPORT.html...
(DIR receives each report's 1280 px screenshot as NAME.png)
exit 0 when every check passes, 1 otherwise, 77 when chromium is missing.
"""
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile


class Browser:
    def __init__(self, exe, profile):
        r_in, self.w = os.pipe()   # we write, Chromium reads fd 3
        self.r, w_out = os.pipe()  # Chromium writes fd 4, we read

        def fds():
            os.dup2(r_in, 3)
            os.dup2(w_out, 4)

        self.p = subprocess.Popen(
            [exe, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + profile, "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_in)
        os.close(w_out)
        self.next_id = 0
        self.events = []
        self.buf = b""

    def _read_msg(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read_msg()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method):
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._read_msg()
            if m.get("method") == method:
                return m
            self.events.append(m)

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def main():
    args = sys.argv[1:]
    shots = None
    if len(args) >= 2 and args[0] == "--screenshots":
        shots, args = args[1], args[2:]
    if not args:
        print(__doc__)
        return 2
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        print("SKIP: chromium not installed (apt-get install chromium)")
        return 77
    fails = []
    if shots:
        os.makedirs(shots, exist_ok=True)
    for a in args:
        name = os.path.basename(os.path.dirname(os.path.abspath(a))) + "-" + os.path.basename(a)
        shot = os.path.join(shots, os.path.splitext(name)[0] + ".png") if shots else None
        print("%s:" % a)
        fails += check_report(exe, os.path.abspath(a), shot)
    for f in fails:
        print("FAIL:", f)
    print("browser checks: %s" % ("FAILED" if fails else "ok"))
    return 1 if fails else 0


def check_report(exe, report, shot):
    from PIL import Image

    fails = []
    profile = tempfile.mkdtemp(prefix="wobble-chromium-")
    b = Browser(exe, profile)
    try:
        targets = b.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        s = b.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        for dom in ("Page", "Runtime", "Log", "Network"):
            b.call(dom + ".enable", session=s)

        def load(width, height):
            b.call("Emulation.setDeviceMetricsOverride", session=s, width=width, height=height,
                   deviceScaleFactor=1, mobile=width < 600)
            b.call("Page.navigate", session=s, url="file://" + report)
            b.wait_event("Page.loadEventFired")

        def js(expr):
            r = b.call("Runtime.evaluate", session=s, expression=expr, returnByValue=True)
            return r["result"].get("value")

        load(1280, 900)
        # every request: the page itself or a data: URI
        for e in list(b.events):
            m, p = e.get("method"), e.get("params", {})
            if m == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not (url.startswith("data:") or url == "file://" + report):
                    fails.append("network request: " + url[:120])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                fails.append("console %s: %s" % (p["type"], " ".join(str(a.get("value", a.get("description", "")))
                                                                    for a in p.get("args", []))[:200]))
            elif m == "Runtime.exceptionThrown":
                fails.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:200])
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                fails.append("log %s: %s" % (p["entry"]["level"], p["entry"]["text"][:200]))
        areas = js("JSON.stringify(Array.from(document.querySelectorAll('svg.plot')).map(function(s){"
                   "var a=s.querySelector('rect.area').getBoundingClientRect();"
                   "return [s.id, a.left+window.scrollX, a.top+window.scrollY, a.width, a.height];}))")
        areas = json.loads(areas)
        width = js("document.documentElement.scrollWidth")
        height = js("document.documentElement.scrollHeight")
        if not areas:
            fails.append("no plot in the report")
        shot_png = base64.b64decode(b.call(
            "Page.captureScreenshot", session=s, format="png", captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})["data"])
        img = Image.open(io.BytesIO(shot_png)).convert("RGB")
        if shot:
            with open(shot, "wb") as f:
                f.write(shot_png)
        blank = 0
        for pid, x, y, w, h in areas:
            if w < 150 or h < 80:
                fails.append("plot %s collapsed: %.0f x %.0f px" % (pid, w, h))
                continue
            crop = img.crop((int(x) + 2, int(y) + 2, int(x + w) - 2, int(y + h) - 2))
            px = crop.getdata()
            coloured = sum(1 for r, g, bb in px if max(r, g, bb) - min(r, g, bb) > 40 or max(r, g, bb) < 60)
            if coloured < 40:
                blank += 1
                fails.append("plot %s is blank: %d coloured pixels in its area" % (pid, coloured))
        print("  1280 px: %d plots, page %d x %d px, %d blank" % (len(areas), width, height, blank))
        # the sort script: a click on the first sortable header sorts by it
        order = js("JSON.stringify((function(){var th=document.querySelector('table.sortable th.sort');"
                   "if(!th)return null;var t=th.closest('table'),i=th.cellIndex,get=function(){return "
                   "Array.prototype.map.call(t.tBodies[0].rows,function(r){return r.cells[i].textContent;});};"
                   "var a=get();th.click();var b=get();th.click();var c=get();return [a,b,c];})())")
        order = json.loads(order)
        if order:
            a, asc, desc = order
            if asc != sorted(a, key=str.lower) and asc != sorted(a) or desc != asc[::-1]:
                fails.append("sorting by the first column: %s / %s" % (asc[:4], desc[:4]))

        load(390, 800)
        phone_width = js("document.documentElement.scrollWidth")
        print("  390 px: page width %d px" % phone_width)
        if phone_width > 390:
            fails.append("at 390 px the page scrolls sideways (%d px wide)" % phone_width)

        pdf = base64.b64decode(b.call("Page.printToPDF", session=s, printBackground=False)["data"])
        pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
        print("  print to PDF: %d bytes, %d pages" % (len(pdf), pages))
        if not pdf.startswith(b"%PDF") or pages < 1:
            fails.append("print to PDF gave no PDF page")
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)
    return fails


if __name__ == "__main__":
    sys.exit(main())
