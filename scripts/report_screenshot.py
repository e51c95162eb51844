"""Take the README's screenshot: a generated Allure report with one scenario's timeline chart open.

    scripts/report.sh
    python scripts/report_screenshot.py [--report reports/allure-report] [--out docs/report.png]
                                        [--scenario "The API rides out a Postgres crash under heavy load"]

Serves the report on 127.0.0.1 with Python's http.server, drives headless
Chromium (``chromium`` on the PATH, a fresh profile, background networking off)
over the DevTools protocol on 127.0.0.1: opens the scenario's result, expands
its "timeline chart" attachment and captures the page. Everything it starts is
stopped before it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

LOOPBACK = "127.0.0.1"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
]
# clicks the attachment row whose title is NAME (which expands it in place), scrolling only if needed
_OPEN_ATTACHMENT = """
(() => {
  const rows = [...document.querySelectorAll('.attachment-row')];
  const row = rows.find(r => r.textContent.includes(NAME));
  if (!row) return 'missing';
  row.click();
  row.scrollIntoView({block: 'nearest'});
  return 'clicked';
})()
"""
# the expanded image, loaded and laid out at its full height (not mid-animation)
_CHART_SHOWN = """
(() => {
  const img = document.querySelector('img[src*="attachments/"]');
  return !!(img && img.complete && img.naturalWidth > 0
            && Math.abs(img.getBoundingClientRect().height - img.clientWidth * img.naturalHeight / img.naturalWidth) < 2);
})()
"""


def _test_uid(report: Path, scenario: str) -> str:
    for path in (report / "data" / "test-cases").glob("*.json"):
        data = json.loads(path.read_text())
        if data.get("name") == scenario:
            return data["uid"]
    raise SystemExit(f"no test case named {scenario!r} in {report}")


def _serve(report: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(report))
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


async def _until(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(interval)


async def _capture(devtools_port: int, url: str, attachment: str, out: Path, width: int, height: int) -> None:
    async with aiohttp.ClientSession() as http:

        async def page_ws():
            async with http.get(f"http://{LOOPBACK}:{devtools_port}/json/list") as response:
                pages = [p for p in await response.json() if p.get("type") == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        ws_url = await _until(page_ws, 20, "Chromium's DevTools endpoint")
        async with http.ws_connect(ws_url, max_msg_size=0) as ws:
            ids = iter(range(1, 10_000))

            async def call(method: str, **params):
                msg_id = next(ids)
                await ws.send_json({"id": msg_id, "method": method, "params": params})
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("id") == msg_id:
                        if "error" in data:
                            raise RuntimeError(f"{method}: {data['error']}")
                        return data.get("result", {})
                raise RuntimeError(f"{method}: the DevTools connection closed")

            async def evaluate(expression: str):
                result = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                return result.get("result", {}).get("value")

            await call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            await call("Page.navigate", url=url)
            script = _OPEN_ATTACHMENT.replace("NAME", json.dumps(attachment))
            await _until(lambda: _is(evaluate(script), "clicked"), 30, f"the {attachment!r} attachment row")
            await _until(lambda: evaluate(_CHART_SHOWN), 20, "the chart image")
            shot = await call("Page.captureScreenshot", format="png")
            out.write_bytes(base64.b64decode(shot["data"]))


async def _is(awaitable, expected) -> bool:
    return (await awaitable) == expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, default=Path("reports/allure-report"))
    parser.add_argument("--out", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--scenario", default="The API rides out a Postgres crash under heavy load")
    parser.add_argument("--attachment", default="timeline chart")
    parser.add_argument("--size", default="1600x1400", help="viewport, pixels")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise SystemExit("no chromium on the PATH (apt-get install chromium)")
    width, height = (int(v) for v in args.size.split("x"))
    uid = _test_uid(args.report, args.scenario)
    server = _serve(args.report)
    profile = tempfile.mkdtemp(prefix="report-shot-")
    # a free port for DevTools: Chromium picks one itself with port 0 and writes it to DevToolsActivePort
    proc = subprocess.Popen(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--remote-debugging-address={LOOPBACK}",
            "--remote-debugging-port=0",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        active = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().strip()):
            if time.monotonic() >= deadline or proc.poll() is not None:
                raise SystemExit("Chromium did not open its DevTools port within 30 s")
            time.sleep(0.05)
        devtools_port = int(active.read_text().split()[0])
        url = f"http://{LOOPBACK}:{server.server_address[1]}/#testresult/{uid}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        asyncio.run(_capture(devtools_port, url, args.attachment, args.out, width, height))
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
