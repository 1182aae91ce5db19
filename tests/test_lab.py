"""The classroom: JupyterLab runs chapter 02 cell by cell, as a student would, with no network.

``lab_server`` starts JupyterLab headless on 127.0.0.1 (a free port, a random token) with the
command line of ``make lab`` (:func:`eeve_lib.book.lab.lab_command`), rooted at ``book/``. The test
opens chapter 02 through the server's contents API, starts the chapter's kernel (``eeve-book``)
through its sessions API, and runs every code cell over the kernel's websocket, as the
JupyterLab page does, against a micro run directory (the parameters papermill would inject go
into the cell after the parameters cell). It checks the outputs: the summary table, the figures,
the threshold slider, a redraw when the slider moves, and an exercise check. The server is
stopped by its process id, and so is any kernel it leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from eeve_lib.book.lab import KERNEL_DISPLAY_NAME, KERNEL_NAME, OFFLINE_SETTINGS, kernel_installed, lab_command
from tests.conftest import MICRO

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTER = "02_frequency_loop.ipynb"
START_S = 120  # JupyterLab's start on two busy cores
CELL_S = 240  # the slowest cell of chapter 02 at MICRO settings


def test_every_chapter_names_the_projects_kernel():
    for path in sorted(BOOK.glob("*.ipynb")):
        spec = json.loads(path.read_text())["metadata"]["kernelspec"]
        assert spec["name"] == KERNEL_NAME and spec["display_name"] == KERNEL_DISPLAY_NAME, path.name


def test_the_kernel_is_registered_in_this_environment():
    """make setup registers it inside .venv (--sys-prefix): it runs this very interpreter."""
    import sys

    folder = kernel_installed()
    assert folder is not None, "the eeve-book kernel is not registered: run make setup"
    spec = json.loads((folder / "kernel.json").read_text())
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()
    assert spec["display_name"] == KERNEL_DISPLAY_NAME


def test_the_lab_command_is_local_and_offline():
    command = lab_command(port=8899, token="t", open_browser=False)
    assert "--ServerApp.ip=127.0.0.1" in command and f"--ServerApp.root_dir={BOOK}" in command
    assert set(OFFLINE_SETTINGS) <= set(command) and "--no-browser" in command
    makefile = (ROOT / "Makefile").read_text()
    assert "\nlab: setup\n" in makefile and "eeve lab" in makefile
    assert '--name eeve-book --display-name "eeve-book (.venv)"' in makefile


# --------------------------------------------------------------------------------------------
# The server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, base: str, token: str, process: subprocess.Popen):
        self.base, self.token, self.process = base, token, process

    def request(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw and "json" in response.headers.get("Content-Type", "")
                                     else raw.decode(errors="replace"))


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server by its PID, then SIGKILL what is left of it and of its kernels, by PID."""
    import psutil

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    for child in children:
        try:
            child.wait(timeout=5)
        except psutil.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


@contextlib.contextmanager
def running_lab(home: Path, root: Path = BOOK):
    """JupyterLab with ``make lab``'s command line rooted at ``root``, on a free port with a random
    token and private Jupyter folders under ``home``; stopped by its process id afterwards."""
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    # Private Jupyter folders: nothing of the user's configuration, nothing written to theirs.
    env.update({"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
                "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython")})
    log = open(home / "lab.log", "w")
    process = subprocess.Popen(lab_command(port=port, token=token, open_browser=False, root=root), stdout=log,
                               stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, process)
    try:
        deadline = time.monotonic() + START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}:\n{(home / 'lab.log').read_text()[-3000:]}")
            try:
                if lab.request("GET", "/api/status")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in {START_S} s:\n{(home / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield lab
    finally:
        _stop(process)
        log.close()
    assert process.poll() is not None


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    if kernel_installed() is None:
        pytest.fail("the eeve-book kernel is not registered: run make setup")
    with running_lab(tmp_path_factory.mktemp("jupyter")) as lab:
        yield lab


# --------------------------------------------------------------------------------------------
# The kernel, over the websocket the JupyterLab page uses


class Kernel:
    def __init__(self, lab: Lab, kernel_id: str):
        import websocket

        self.session = uuid.uuid4().hex
        url = f"ws://127.0.0.1:{lab.base.rsplit(':', 1)[1]}/api/kernels/{kernel_id}/channels?session_id={self.session}"
        self.ws = websocket.create_connection(url, header=[f"Authorization: token {lab.token}"], timeout=CELL_S)

    def run(self, code: str, timeout: float = CELL_S) -> list[dict]:
        """Execute ``code``; return its iopub messages (stream, display_data, execute_result, error, ...)."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "student", "session": self.session, "msg_type": "execute_request",
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        out, idle, replied = [], False, False
        deadline = time.monotonic() + timeout
        while not (idle and replied):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer in {timeout} s to:\n{code[:300]}")
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if msg["channel"] == "shell" and kind == "execute_reply":
                replied = True
            elif msg["channel"] == "iopub":
                if kind == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
                elif kind not in ("status", "execute_input"):
                    out.append(msg)
        return out

    def close(self):
        self.ws.close()


def _text(messages: list[dict]) -> str:
    parts = []
    for m in messages:
        c = m["content"]
        parts.append(c.get("text") or c.get("data", {}).get("text/plain", "") or "")
        if m["header"]["msg_type"] == "error":
            parts.append(f"{c['ename']}: {c['evalue']}")
    return "\n".join(parts)


def _mimetypes(messages: list[dict], kind: str | None = None) -> set[str]:
    return {mime for m in messages if kind is None or m["header"]["msg_type"] == kind
            for mime in m["content"].get("data", {})}


@pytest.mark.slow
def test_chapter_02_runs_cell_by_cell_in_jupyterlab(lab_server, micro_expanded):
    lab = lab_server
    status, page = lab.request("GET", "/lab")
    assert status == 200 and "JupyterLab" in page
    _, specs = lab.request("GET", "/api/kernelspecs")
    assert KERNEL_NAME in specs["kernelspecs"]
    assert specs["kernelspecs"][KERNEL_NAME]["spec"]["display_name"] == KERNEL_DISPLAY_NAME
    # The chapter as the file browser opens it: JupyterLab is rooted at book/.
    status, model = lab.request("GET", f"/api/contents/{CHAPTER}")
    assert status == 200 and model["type"] == "notebook"
    notebook = model["content"]
    assert notebook["metadata"]["kernelspec"]["name"] == KERNEL_NAME
    status, session = lab.request("POST", "/api/sessions", {"path": CHAPTER, "type": "notebook", "name": CHAPTER,
                                                              "kernel": {"name": KERNEL_NAME}})
    assert status == 201 and session["kernel"]["name"] == KERNEL_NAME
    kernel = Kernel(lab, session["kernel"]["id"])
    try:
        assert "book" in _text(kernel.run("import os; print(os.getcwd())")), "the kernel runs in book/"
        parameters = (f"profile = 'tiny'\nrun_dir = {str(micro_expanded)!r}\ndevice = None\nseed = None\n"
                      f"overrides = {json.dumps(MICRO)!r}\n")
        outputs = {}
        for index, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            messages = kernel.run(source)
            if "parameters" in cell["metadata"].get("tags", []):
                messages += kernel.run(parameters)  # where papermill puts its injected cell
            errors = [m["content"] for m in messages if m["header"]["msg_type"] == "error"]
            assert not errors, f"cell {index} failed: {errors[0]['ename']}: {errors[0]['evalue']}\n{source[:300]}"
            outputs[index] = messages
        everything = "\n".join(_text(m) for m in outputs.values())
        assert "profile tiny: threshold" in everything
        assert "new_tokens" in everything and "iterations" in everything  # the summary table
        assert sum("image/png" in _mimetypes(m) for m in outputs.values()) >= 2  # the figures
        slider_cell = next(i for i, c in enumerate(notebook["cells"]) if "threshold_explorer(" in "".join(c["source"]))
        assert "application/vnd.jupyter.widget-view+json" in _mimetypes(outputs[slider_cell])
        assert "candidates pass the first iteration" in _text(outputs[slider_cell])
        # the figure it redraws sits in the next cell, which carries the figure's caption in the book
        assert "image/png" in _mimetypes(outputs[slider_cell + 1])
        assert "2.1: waiting for your answer" in everything

        # Dragging the slider: the figure and the count are replaced in place.
        moved = kernel.run("threshold_slider.value = threshold_slider.options[-1]")
        assert "image/png" in _mimetypes(moved, "update_display_data")
        assert "0 of" in _text(moved)
        # An exercise, answered right and wrong, against the run the chapter was set up on.
        right = _text(kernel.run('print(check("2.1", (summary["new_tokens"], summary["iterations"])))'))
        wrong = _text(kernel.run('print(check("2.1", (summary["new_tokens"] + 1, summary["iterations"])))'))
        assert "2.1: right" in right and "off by +1" in wrong and micro_expanded.name in right
    finally:
        kernel.close()
        lab.request("DELETE", f"/api/sessions/{session['id']}")
    _, running = lab.request("GET", "/api/kernels")
    assert running == []


# --------------------------------------------------------------------------------------------
# The page itself, in Debian's headless Chromium (skips where it is missing, like test_browser.py)


@pytest.mark.browser
def test_chapter_02_opens_and_runs_in_the_jupyterlab_page(lab_server, tmp_path):
    """The student's view: the chapter opens with the eeve-book kernel, and Shift-Enter runs a cell."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_browser import CHROMIUM_FLAGS, INSTALL_HINT, _program

    paths = {what: _program(env, default) for env, default, what in
             [("EEVE_CHROMIUM", "/usr/bin/chromium", "chromium"),
              ("EEVE_CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")]}
    missing = [what for what, path in paths.items() if path is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found ({INSTALL_HINT})")
    options = webdriver.ChromeOptions()
    options.binary_location = paths["chromium"]
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(paths["chromedriver"]), options=options)
    lab = lab_server
    try:
        wait = WebDriverWait(driver, START_S)
        driver.get(f"{lab.base}/lab/tree/{CHAPTER}?token={lab.token}")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell")) >= 8,
                   "chapter 02 did not open in JupyterLab")
        wait.until(lambda d: any(KERNEL_DISPLAY_NAME in e.text for e in
                                 d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel-toolbar *")),
                   f"the toolbar does not name the kernel {KERNEL_DISPLAY_NAME!r}")
        heading = driver.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-MarkdownOutput h1")
        assert "frequency loop" in heading.text
        first = driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell")[0]  # the parameters
        first.find_element(By.CSS_SELECTOR, ".jp-InputArea-editor").click()
        webdriver.ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        wait.until(lambda d: "[1]" in first.find_element(By.CSS_SELECTOR, ".jp-InputPrompt").text,
                   "Shift-Enter did not run the parameters cell")
        driver.save_screenshot(str(tmp_path / "lab.png"))
    finally:
        driver.quit()
