#!/usr/bin/env python3
"""The dashboard's browser test: headless Chromium driven over WebDriver (plain HTTP to chromedriver on 127.0.0.1).

Run by BrowserTests.swift, which starts the grid (a manager, two workers) and chromedriver, and restarts the manager
when this script asks (it writes CONTROL/restart and waits for CONTROL/restarted). Every wait is bounded.

  register -> logout -> login -> submit two jobs from the form -> watch the job page change without reloading
  (state, log, balance) across a manager restart -> worker earnings and the overview chart show real figures -> logout.

Screenshots of every page at desktop and phone widths go to ARTIFACTS.
"""
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE = os.environ["DASH_BASE"]                 # http://127.0.0.1:PORT of the manager
DRIVER = os.environ["DASH_DRIVER"]             # http://127.0.0.1:PORT of chromedriver
ARTIFACTS = os.environ["DASH_ARTIFACTS"]       # folder for screenshots
CONTROL = os.environ["DASH_CONTROL"]           # folder for the restart handshake
WORKER_PAGE = os.environ.get("DASH_WORKER_PAGE")  # a worker's status page, if one serves it
CHROMIUM = os.environ.get("DASH_CHROMIUM", "/usr/bin/chromium")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


def log(*args):
    print("[browser]", *args, flush=True)


class WebDriverError(Exception):
    pass


def call(method, path, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(DRIVER + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read().decode() or "{}").get("value")
    except urllib.error.HTTPError as e:
        raise WebDriverError(f"{method} {path}: {e.code} {e.read().decode()[:800]}")


class Browser:
    def __init__(self):
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions", "--lang=en-GB"]}}}}
        self.sid = call("POST", "/session", caps, timeout=120)["sessionId"]
        self.size = None

    def s(self, path):
        return f"/session/{self.sid}{path}"

    def quit(self):
        try:
            call("DELETE", self.s(""), timeout=30)
        except Exception as e:  # the session may already be gone
            log("quit:", e)

    def go(self, path):
        call("POST", self.s("/url"), {"url": BASE + path if path.startswith("/") else path})

    def js(self, script, *args):
        return call("POST", self.s("/execute/sync"), {"script": script, "args": list(args)})

    def js_async(self, script, *args):
        return call("POST", self.s("/execute/async"), {"script": script, "args": list(args)})

    def find(self, css, timeout=10):
        deadline = time.time() + timeout
        while True:
            try:
                return call("POST", self.s("/element"), {"using": "css selector", "value": css})[ELEMENT]
            except WebDriverError:
                if time.time() > deadline:
                    raise WebDriverError(f"no element {css} on {self.url()}")
                time.sleep(0.2)

    def type(self, css, text, clear=True):
        el = self.find(css)
        if clear:
            call("POST", self.s(f"/element/{el}/clear"), {})
        call("POST", self.s(f"/element/{el}/value"), {"text": text})

    def click(self, css):
        call("POST", self.s(f"/element/{self.find(css)}/click"), {})

    def text(self, css):
        return self.js("var e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)

    def attr(self, css, name):
        return self.js("var e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;", css, name)

    def url(self):
        return call("GET", self.s("/url"))

    def title(self):
        return call("GET", self.s("/title"))

    def resize(self, width, height):
        if self.size != (width, height):
            call("POST", self.s("/window/rect"), {"width": width, "height": height})
            self.size = (width, height)

    def wait(self, what, condition, timeout=60, interval=0.25):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = condition()
                if value:
                    return value
            except WebDriverError:
                pass
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for: {what} (at {self.url()})")

    def screenshot(self, name):
        """The page at both widths; the full page height (up to a limit) so nothing is cut off."""
        for label, (w, h) in SIZES.items():
            self.resize(w, h)
            time.sleep(0.3)
            full = self.js("return Math.min(4000, Math.max(document.documentElement.scrollHeight, document.body.scrollHeight));")
            self.resize(w, max(h, int(full or h)))
            time.sleep(0.3)
            png = base64.b64decode(call("GET", self.s("/screenshot")))
            path = os.path.join(ARTIFACTS, f"{name}-{label}.png")
            with open(path, "wb") as f:
                f.write(png)
        self.resize(*SIZES["desktop"])


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    b = Browser()
    try:
        run(b)
    except Exception:
        try:
            b.resize(*SIZES["desktop"])
            png = base64.b64decode(call("GET", b.s("/screenshot")))
            with open(os.path.join(ARTIFACTS, "failure.png"), "wb") as f:
                f.write(png)
            log("failed at", b.url())
            log("page text:", (b.text("main") or "")[:2000])
        except Exception as e:
            log("could not record the failure:", e)
        raise
    finally:
        b.quit()


def run(b):
    # Anonymous pages.
    b.go("/")
    check(b.title().startswith("Overview"), f"title {b.title()}")
    b.screenshot("overview-anonymous")
    b.go("/login")
    b.screenshot("login")

    # Register through the form; it logs in and lands on the overview.
    b.go("/register")
    b.screenshot("register")
    b.type("#username", "sam")
    b.type("#password", "correct horse battery")
    b.type("#password2", "correct horse battery")
    b.click("#register-button")
    b.wait("logged in after registering", lambda: b.text(".who .name") == "sam")
    check(b.text("#nav-balance") == "100", f"starting balance {b.text('#nav-balance')}")

    # Log out and log in again through the login form.
    b.click("#logout")
    b.wait("logged out", lambda: b.find("a[href='/login']") and b.text(".who .name") is None)
    b.go("/login")
    b.type("#username", "sam")
    b.type("#password", "correct horse battery")
    b.click("#login-button")
    b.wait("logged in", lambda: b.text(".who .name") == "sam")

    # Submit: the cost preview follows the fields (the server's formula), then a job from the form.
    b.go("/submit")
    b.wait("cost preview", lambda: b.text("#cost-hold") == "13")  # 5 + 2*1 + 1 + 0 + 5
    b.type("#cpus", "2")
    b.wait("cost preview follows CPUs", lambda: b.text("#cost-hold") == "15" and b.text("#cost-after") == "85")
    b.screenshot("submit")
    b.type("#name", "<b>fit</b> <script>window.__xss = 1</script>")
    # Ticks once a second until the test releases it (a file the restricted sandbox can see), at most 90 seconds.
    release = os.path.join(CONTROL, "release")
    script = (
        "import os, time\n"
        "print('starting <script>alert(1)</script>', flush=True)\n"
        "for i in range(90):\n"
        "    print('tick', i, flush=True)\n"
        f"    if os.path.exists({release!r}):\n"
        "        break\n"
        "    time.sleep(1)\n"
        "open('result.txt', 'w').write('42\\n')\n"
        "print('all done', flush=True)\n")
    b.js("document.getElementById('script').value = arguments[0];", script)
    b.type("#outputs", "result.txt")
    # The test grid's workers run the restricted tier (started with --allow-unsandboxed): lower the job's minimum.
    b.js("document.getElementById('min_tier').value = 'restricted';")
    b.click("#submit-job")
    b.wait("the job page", lambda: "/jobs/" in b.url())
    job_url = b.url()
    job_id = job_url.rstrip("/").split("/")[-1]
    log("job", job_id, "submitted")
    check(b.js("return window.__xss === undefined;"), "markup in the job name ran as script")
    check("<script>window.__xss = 1</script>" in (b.text("h1") or ""), "the job name is not shown as text")
    held_balance = int(b.text("#nav-balance"))
    check(held_balance == 85, f"balance after the hold {held_balance}")

    # A marker that only survives if the page is never reloaded.
    b.js("window.__marker = 'still-here';")
    b.wait("state running, without reloading", lambda: b.attr("#job-state", "data-state") == "running", timeout=60)
    b.wait("the log streams in", lambda: "tick 2" in (b.text("#log") or ""), timeout=60)
    check("<script>alert(1)</script>" in b.text("#log"), "the log's markup is not shown as text")
    check(b.js("return window.__marker;") == "still-here", "the job page reloaded")
    worker = b.text("#job-worker")
    log("running on", worker)
    b.screenshot("job-running")

    # A second job, so that more runs at once; the overview and workers pages show real figures.
    b.go("/submit")
    b.type("#name", "second")
    b.js("document.getElementById('script').value = arguments[0];", "import time\nfor i in range(12):\n    print(i, flush=True)\n    time.sleep(1)\n")
    b.js("document.getElementById('min_tier').value = 'restricted';")
    b.click("#submit-job")
    b.wait("second job page", lambda: "/jobs/" in b.url() and b.url() != job_url)
    b.wait("second job running", lambda: b.attr("#job-state", "data-state") == "running", timeout=60)
    b.go("/")
    b.wait("two workers online", lambda: b.text("#stat-workers") == "2", timeout=30)
    b.wait("chart shows CPUs in use", lambda: int(b.attr("#chart svg", "data-cpus-used") or 0) >= 3, timeout=30)
    check(b.attr("#chart svg", "data-cpus-total") == "4", f"chart total CPUs {b.attr('#chart svg', 'data-cpus-total')}")
    check(int(b.text("#stat-running")) == 2, f"running jobs {b.text('#stat-running')}")
    check(b.js("return document.querySelectorAll('#chart polyline.line').length;") == 1, "no chart line")
    b.screenshot("overview")
    b.go("/workers")
    rows = b.js("return Array.from(document.querySelectorAll('tr.worker')).map(r => ["
                "r.querySelector('.worker-name').textContent, r.querySelector('.badge').textContent,"
                "r.querySelector('.worker-running').textContent, r.querySelector('.worker-earned').textContent]);")
    log("workers", rows)
    check(len(rows) == 2 and all(r[1] == "online" for r in rows), f"workers page rows {rows}")
    check(sum(int(r[2]) for r in rows) == 2, f"running per worker {rows}")
    earned_before = {r[0]: int(r[3]) for r in rows}
    b.screenshot("workers")
    b.go("/jobs")
    b.screenshot("jobs")
    b.go("/my-jobs")
    check(b.js("return window.__xss === undefined;"), "markup in a job name ran on my jobs")
    b.screenshot("my-jobs")
    b.go("/leaderboard")
    b.screenshot("leaderboard")
    if WORKER_PAGE:
        b.go(WORKER_PAGE)
        b.wait("worker status page", lambda: "restricted" in (b.text("#tier") or ""))
        b.screenshot("worker-status")

    # Back on the job page: restart the manager while it runs; the page must keep updating without a reload.
    b.go(job_url)
    b.wait("job page live", lambda: b.attr("#live-status", "data-state") == "live", timeout=30)
    b.js("window.__marker = 'still-here';")
    opens = int(b.attr("body", "data-live-opens") or 0)
    balance_before = int(b.text("#nav-balance"))
    check(b.attr("#job-state", "data-state") == "running", "the first job ended before the restart")
    with open(os.path.join(CONTROL, "restart"), "w") as f:
        f.write(job_id)
    log("asked for a manager restart")
    deadline = time.time() + 90
    while not os.path.exists(os.path.join(CONTROL, "restarted")):
        check(time.time() < deadline, "the manager was not restarted in time")
        time.sleep(0.2)
    log("manager restarted")
    b.wait("the page reconnects to the new manager",
           lambda: int(b.attr("body", "data-live-opens") or 0) > opens and b.attr("#live-status", "data-state") == "live", timeout=60)
    seen = len(b.text("#log"))
    b.wait("new log lines after the restart", lambda: len(b.text("#log") or "") > seen, timeout=30)
    with open(release, "w") as f:
        f.write("go")
    b.wait("the job completes on the same page", lambda: b.attr("#job-state", "data-state") == "completed", timeout=120)
    b.wait("the whole log arrives", lambda: "all done" in (b.text("#log") or ""), timeout=30)
    check(b.js("return window.__marker;") == "still-here", "the job page reloaded")
    log_text = b.text("#log")
    ticks = [int(line.split()[1]) for line in log_text.splitlines() if line.startswith("tick ")]
    check(ticks == list(range(len(ticks))) and len(ticks) >= 5, "the log lost or repeated lines:\n" + log_text)
    b.wait("the balance shows the refund of unused minutes", lambda: int(b.text("#nav-balance")) > balance_before, timeout=30)
    b.wait("the output is listed", lambda: b.text("#outputs a") == "result.txt", timeout=30)
    check(b.text("#job-exit") == "0", f"exit code {b.text('#job-exit')}")
    downloaded = b.js_async("var done = arguments[arguments.length - 1];"
                            "fetch(document.querySelector('#outputs a').href).then(r => r.text()).then(done, e => done('error ' + e));")
    check(downloaded == "42\n", f"downloaded output {downloaded!r}")
    cost = b.text("#job-cost")
    log("cost", cost, "balance", b.text("#nav-balance"))
    b.screenshot("job-completed")

    # The worker that ran it earned what the job paid.
    paid = int(cost.split()[0])
    b.go("/workers")

    def earned():
        rows = b.js("return Array.from(document.querySelectorAll('tr.worker')).map(r => ["
                    "r.querySelector('.worker-name').textContent, r.querySelector('.worker-earned').textContent]);")
        return {r[0]: int(r[1]) for r in rows}
    b.wait("the worker's earnings grow by what the job paid", lambda: earned().get(worker, 0) >= earned_before.get(worker, 0) + paid,
           timeout=30)
    log("earnings", earned_before, "->", earned())

    # Account: balance and ledger; a join token is shown once.
    b.go("/account")
    check(b.text("#account-balance") == b.text("#nav-balance"), "account and header balances differ")
    check("payment" in (b.text("#summary") or "") or "release" in (b.text("#summary") or "") or "hold" in (b.text("#summary") or ""),
          "the ledger has no job movements")
    b.click("#create-token")
    b.wait("a new join token", lambda: (b.text("#new-token") or "").startswith("cgw_"))
    b.screenshot("account")

    # Another user's job is not found.
    b.go("/jobs/999999")
    check("404" in b.title(), f"missing job title {b.title()}")
    b.screenshot("not-found")

    # Log out.
    b.click("#logout")
    b.wait("logged out", lambda: b.text(".who .name") is None and b.find("a[href='/login']"))
    b.go("/account")
    b.wait("account needs a login again", lambda: "/login" in b.url())
    log("done")


if __name__ == "__main__":
    main()
