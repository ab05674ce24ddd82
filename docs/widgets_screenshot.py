"""Run the widgets in a real JupyterLab (or Notebook 7) in headless Chromium and save a screenshot.

The test suite checks the widgets' state logic without a browser and runs the
notebooks headlessly (no front end); this script is the front-end check: it opens a
notebook in JupyterLab, runs ``client.run(sim)`` (live progress widget) through the
embedded local service and ``ms.widgets.FieldSlicer(data)``, switches the slicer's
field component and checks that the image changes, then writes
``docs/jupyterlab-widgets.png`` (or ``docs/notebook-widgets.png`` with
``--frontend notebook``). It fails on any error output.

    pip install -e ".[docs]"          # jupyterlab, notebook, playwright
    apt-get install chromium          # the browser (Debian's package)
    python docs/widgets_screenshot.py [--frontend lab|notebook] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nbformat
from playwright.sync_api import Page, sync_playwright

CELLS = [
    "import metosim as ms\nfrom metosim.cli import demo_simulation\n\nsim = demo_simulation()\nclient = ms.Client()  # the embedded local service",
    "data = client.run(sim)",
    "ms.widgets.FieldSlicer(data)",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def kernel_idle(server: str, token: str) -> bool:
    """The notebook's kernel has started and is idle (from the server's REST API, so
    it works the same for either front end)."""
    sessions = httpx.get(f"{server}/api/sessions?token={token}").json()
    return bool(sessions) and sessions[0]["kernel"]["execution_state"] == "idle"


def slicer_image(page: Page) -> str:
    return page.locator(".jp-OutputArea-output img").last.get_attribute("src") or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--frontend", choices=("lab", "notebook"), default="lab")
    args = parser.parse_args()
    out = Path(__file__).with_name(f"{'jupyterlab' if args.frontend == 'lab' else 'notebook'}-widgets.png")

    work = Path(tempfile.mkdtemp(prefix="metosim-lab-"))
    (work / "nb").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, work / "nb" / "widgets.ipynb")
    # A private service, config and data dir: nothing of the user's is touched.
    env = dict(os.environ, XDG_CONFIG_HOME=str(work / "config"), METOSIM_DATA_DIR=str(work / "data"), METOSIM_PORT=str(free_port()))
    port, token = free_port(), "metosim-screenshot"
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyter", args.frontend, "--no-browser", "--allow-root", f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work / 'nb'}"],
        env=env, stdout=open(work / "lab.log", "w"), stderr=subprocess.STDOUT,
    )
    try:
        def lab_up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api?token={token}").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(lab_up, 120, "JupyterLab")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            path = "lab/tree" if args.frontend == "lab" else "notebooks"
            page.goto(f"http://127.0.0.1:{port}/{path}/widgets.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            wait_until(lambda: kernel_idle(f"http://127.0.0.1:{port}", token), 60, "the kernel")
            page.click("text=Run", timeout=10_000)
            page.click("text=Run All Cells", timeout=10_000)
            wait_until(lambda: page.locator(".jp-OutputArea-output img").count() >= 1, 300, "the slicer's image")
            progress = page.locator(".widget-html code").first.inner_text()
            assert progress.startswith("done"), progress
            before = slicer_image(page)
            page.locator(".widget-dropdown select:has(option:text-is('Hz'))").select_option(label="Hz")  # the demo is 2D TE
            wait_until(lambda: slicer_image(page) not in ("", before), 30, "the slicer to redraw")
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count()
            assert errors == 0, f"{errors} error outputs"
            news = page.locator(".jp-toast-button:has-text('No')")  # JupyterLab's news prompt
            if news.count():
                news.first.click()
                time.sleep(1)
            page.locator(".jp-NotebookPanel-notebook").screenshot(path=out)
            browser.close()
        print(f"progress widget: {progress!r}; slicer redrew on a field change; wrote {out}")
    finally:
        lab.terminate()
        subprocess.run([sys.executable, "-m", "metosim.cli", "stop"], env=env, check=False)


if __name__ == "__main__":
    main()
