#!/usr/bin/env python3
"""Verification states in a real browser (issue 15): run by BrowserVerificationTests.swift.

The grid's database already holds a verified job, a job whose check is still pending, and a contradicted one (made by
the store's own verification rules). This logs in through the form, opens each job page and the workers page, checks
what a person reads there, and takes screenshots at desktop and phone widths. Every wait is bounded.

DASH_JOBS is JSON: {"verified": ID, "unverified": ID, "contradicted": ID}; DASH_EXPECT the labels the pages must show.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DASH_CONTROL", os.environ["DASH_ARTIFACTS"])
import browser_flow as flow  # noqa: E402  (the WebDriver client the main browser test uses)

JOBS = json.loads(os.environ["DASH_JOBS"])
EXPECT = json.loads(os.environ["DASH_EXPECT"])
USER = os.environ["DASH_USER"]
PASSWORD = os.environ["DASH_PASSWORD"]


def run(b):
    b.go("/login")
    b.type("#username", USER)
    b.type("#password", PASSWORD)
    b.click("#login-button")
    b.wait("logged in", lambda: b.text(".who .name") == USER)
    for state in ("verified", "unverified", "contradicted"):
        b.go(f"/jobs/{JOBS[state]}")
        b.wait(f"the {state} job's page", lambda: b.find(f"[data-verification='{state}']"))
        shown = b.text(f"[data-verification='{state}']") or ""
        page = b.text("main") or ""
        flow.check(EXPECT[state] in page, f"job {JOBS[state]}: expected {EXPECT[state]!r} on the page, the label says {shown!r}")
        flow.log(f"job {JOBS[state]}: {shown.strip()!r}")
        b.screenshot(f"job-{state}")
    b.go("/workers")
    b.wait("workers page", lambda: "contradicted" in (b.text("main") or ""))
    page = b.text("main") or ""
    for text in EXPECT["workers"]:
        flow.check(text in page, f"workers page: expected {text!r}")
    b.screenshot("workers-reputation")


def main():
    os.makedirs(flow.ARTIFACTS, exist_ok=True)
    b = flow.Browser()
    try:
        run(b)
    except Exception:
        flow.log("failed at", b.url())
        flow.log("page text:", (b.text("main") or "")[:3000])
        raise
    finally:
        b.quit()


if __name__ == "__main__":
    main()
