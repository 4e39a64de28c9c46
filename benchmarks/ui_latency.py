"""Slider-to-image latency of `vrfam-rt ui` in a real browser (headless Chromium).

    python -m vrfam_rt.benchmarks.ui_latency --moves 30 --json benchmarks/results/ui.json \
        --screenshot benchmarks/results/ui.png -- --backend ort

Starts `vrfam-rt ui` (the arguments after `--`) on a free loopback port, opens the page
in Debian's Chromium through Selenium and chromium-driver (no browser download), uploads
Grace Hopper's photo (matplotlib's sample) and times, inside the page (performance.now()):

- the first edit of the upload: from the upload's start to the edited photo's `load`
  (the photo sent, decoded, aligned, inverted, edited, pasted back, shown);
- each slider move: from the input event that sets the slider to the new photo's `load`
  (the page's request, the transformer, the generator, the paste-back, the JPEG, the
  browser's fetch and decode). The slider alternates between two values, so each move
  changes the picture.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import click

PHOTO_ID, UPLOAD_ID = "photo", "upload"
LAST_EDIT = re.compile(r"last edit ([\d.]+) ms")     # in the page's status line


def chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths on this machine, or None (apt-get install chromium
    chromium-driver)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(args: list[str], port: int, log: Path) -> subprocess.Popen:
    """`vrfam-rt ui ARGS --port PORT` in a process of its own, stderr into `log`;
    returns once the page answers (a RuntimeError with the log's tail if it exits)."""
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "vrfam_rt", "ui", *args, "--port", str(port)],
                            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"vrfam-rt ui exited ({proc.returncode}): "
                               f"{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"vrfam-rt ui did not answer in 300 s: {log.read_text()[-2000:]}")


def stop_ui(proc: subprocess.Popen, timeout: float = 30) -> float:
    """SIGTERM, then wait: the seconds it took to exit (kill after `timeout`)."""
    started = time.perf_counter()
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.perf_counter() - started


# In the page: note performance.now() when the photo output shows a new, loaded picture.
WATCH = """
const root = document.getElementById(arguments[0]);
window.__vrfam = {shown: null, src: null};
const seen = () => {
  const img = root.querySelector('img');
  if (!img || !img.src || img.src === window.__vrfam.src) return;
  const src = img.src;
  const done = () => { if (img.src === src) { window.__vrfam.src = src;
                                               window.__vrfam.shown = performance.now(); } };
  if (img.complete && img.naturalWidth) done();
  else img.addEventListener('load', done, {once: true});
};
new MutationObserver(seen).observe(root, {subtree: true, childList: true, attributes: true,
                                          attributeFilter: ['src']});
seen();
"""
# In the page: set a slider's range input and fire its input event; returns the time.
SLIDE = """
const input = document.querySelector('#' + arguments[0] + ' input[type=range]');
window.__vrfam.shown = null;
const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
setter.call(input, String(arguments[1]));
const t0 = performance.now();
input.dispatchEvent(new Event('input', {bubbles: true}));
input.dispatchEvent(new Event('change', {bubbles: true}));
return t0;
"""


class Page:
    """The `vrfam-rt ui` page in headless Chromium (Selenium + chromium-driver)."""

    def __init__(self, url: str, size=(1400, 1000)):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        browser, driver = chromium()
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={size[0]},{size[1]}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.driver.get(url)
        self.wait(lambda d: d.find_elements("css selector", f"#{UPLOAD_ID} input[type=file]"))
        self.driver.execute_script(WATCH, PHOTO_ID)

    def wait(self, condition, timeout: float = 120):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(condition)

    def shown(self) -> float | None:
        """When (performance.now(), ms) the photo output last showed a new picture."""
        return self.driver.execute_script("return window.__vrfam.shown")

    def photo_src(self) -> str | None:
        return self.driver.execute_script("return window.__vrfam.src")

    def upload(self, path: Path) -> float:
        """Upload a photo and wait for its edited photo: the milliseconds it took."""
        t0 = self.driver.execute_script("window.__vrfam.shown = null; return performance.now()")
        self.driver.find_element("css selector", f"#{UPLOAD_ID} input[type=file]").send_keys(
            str(path))
        return self.wait(lambda d: self.shown()) - t0

    def slide(self, attribute: str, value: float) -> float:
        """Move a slider to `value` and wait for the new photo: the milliseconds it took."""
        t0 = self.driver.execute_script(SLIDE, f"slider-{attribute}", value)
        return self.wait(lambda d: self.shown()) - t0

    def upload_refused(self, path: Path) -> str:
        """Upload a file the app refuses: the error message the page shows."""
        self.driver.find_element("css selector", f"#{UPLOAD_ID} input[type=file]").send_keys(
            str(path))
        return self.wait(lambda d: d.execute_script(
            "const t = document.querySelector('[data-testid=toast-body]');"
            "return t && t.innerText"))

    def click(self, element_id: str) -> float:
        """Click a button and wait for a new photo: the milliseconds it took."""
        t0 = self.driver.execute_script("window.__vrfam.shown = null; return performance.now()")
        self.driver.find_element("css selector", f"#{element_id}").click()
        return self.wait(lambda d: self.shown()) - t0

    def download_link(self) -> str:
        """Click "Full-resolution PNG" and wait for its file's link: the link's URL."""
        self.driver.find_element("css selector", "#download").click()
        return self.wait(lambda d: d.execute_script(
            "const a = document.querySelector('#saved a[href]'); return a && a.href"))

    def burst(self, attribute: str, values: list[float]) -> None:
        """Move a slider through `values` at once (one input event each), as a fast
        drag does, and wait until the photo of the last value is shown."""
        self.driver.execute_script(                 # in one task: faster than any edit
            f"for (const v of arguments[1]) {{ (function() {{ {SLIDE} }})"
            ".apply(null, [arguments[0], v]); }", f"slider-{attribute}", values)
        self.wait(lambda d: f"{attribute} {values[-1]:+.2f}" in self.text("status"))

    def nudge(self, attribute: str) -> float:
        """Press the right arrow key on a slider (a trusted input event, as a drag sends)
        and wait for the new photo: the milliseconds it took."""
        from selenium.webdriver.common.keys import Keys

        t0 = self.driver.execute_script("window.__vrfam.shown = null; return performance.now()")
        self.driver.find_element("css selector", f"#slider-{attribute} input[type=range]"
                                 ).send_keys(Keys.ARROW_RIGHT)
        return self.wait(lambda d: self.shown()) - t0

    def text(self, element_id: str) -> str:
        return self.driver.find_element("css selector", f"#{element_id}").text

    def requests(self) -> list[str]:
        """Every URL the page has fetched (resource timing)."""
        return self.driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".concat([location.href])")

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))

    def close(self) -> None:
        self.driver.quit()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation between order statistics."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--moves", default=30, show_default=True, type=click.IntRange(2),
              help="Slider moves timed.")
@click.option("--attribute", default="Smiling", show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path))
@click.option("--screenshot", type=click.Path(path_type=Path))
@click.argument("ui_args", nargs=-1, type=click.UNPROCESSED)
def main(moves, attribute, json_path, screenshot, ui_args):
    """Time `vrfam-rt ui UI_ARGS` in headless Chromium: the first edit of an upload and
    MOVES slider moves (median, p90)."""
    import matplotlib.cbook

    if chromium() is None:
        raise click.ClickException("needs chromium and chromedriver (apt-get install "
                                   "chromium chromium-driver)")
    photo = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    load = os.getloadavg()[0]
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"vrfam-ui-{port}.log"
    proc = start_ui(list(ui_args), port, log)
    try:
        page = Page(f"http://127.0.0.1:{port}/")
        try:
            first = page.upload(photo)
            times, edits = [], []
            for k in range(moves):
                times.append(page.slide(attribute, 1.0 if k % 2 == 0 else 0.5))
                edits.append(float(LAST_EDIT.search(page.text("status")).group(1)))
            status = page.text("status")
            if screenshot:
                page.screenshot(screenshot)
        finally:
            page.close()
    finally:
        stopped = stop_ui(proc)
    row = {"ui_args": list(ui_args), "status": status.split("\n")[0],
           "first_edit_ms": round(first, 1), "moves": moves,
           "move_median_ms": round(statistics.median(times), 1),
           "move_p90_ms": round(percentile(times, 0.9), 1),
           "edit_median_ms": round(statistics.median(edits), 1),
           "page_overhead_median_ms": round(statistics.median(
               [t - e for t, e in zip(times, edits)]), 1),
           "move_ms": [round(t, 1) for t in times], "edit_ms": edits,
           "sigterm_exit_s": round(stopped, 2),
           "photo": f"grace_hopper.jpg {photo.stat().st_size} bytes",
           "cpu": _cpu_model(), "cores": os.cpu_count(), "load_average_1min_before": load}
    click.echo(f"first edit of an upload (with inversion): {row['first_edit_ms']} ms\n"
               f"slider move -> new photo shown, {moves} moves: median "
               f"{row['move_median_ms']} ms, p90 {row['move_p90_ms']} ms; the edit itself "
               f"(server) median {row['edit_median_ms']} ms, the page's round trip "
               f"{row['page_overhead_median_ms']} ms\n"
               f"SIGTERM -> exit: {row['sigterm_exit_s']} s\n{row['status']}")
    if json_path:
        json_path.write_text(json.dumps(row, indent=1) + "\n")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
