"""Execute one chapter notebook headless: progress per cell, a quiet kernel, a quiet stop on Ctrl-C.

The runner (``eeve run``) executes every chapter through :func:`execute_chapter`. It is papermill
with three differences, each for the console of a run:

* progress: a bar per chapter names the chapter and the code cell running ("cell 7/31");
* a quiet kernel: what the kernel process prints outside a cell goes to the chapter's log; the
  kernel talks to the runner over a Unix socket in the private Jupyter runtime folder instead of
  TCP on localhost (so no "running over TCP without encryption" warning for every chapter), and
  an idle kernel is not sent SIGINT when it is shut down (jupyter_client does
  that by default, and a kernel caught between two messages logs "KeyboardInterrupt caught in
  kernel");
* a quiet stop: on Ctrl-C (or SIGTERM, which ``eeve`` raises as the same) the busy kernel, which
  runs in its own session and never sees the terminal's Ctrl-C, is killed with everything it
  started, instead of a graceful shutdown that races the running cell and prints pages of ZMQ errors.

Errors inside the notebook are papermill's (:class:`papermill.PapermillExecutionError`), with the
traceback in the saved notebook and the log.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from typing import IO, Any

ENGINE_NAME = "eeve-chapter"
# Unix socket paths are limited to 107 bytes; the kernel's sockets are "<runtime dir>/kernel-<12 hex>-ipc-<n>".
_MAX_RUNTIME_DIR = 60


def _use_ipc() -> bool:
    from jupyter_core.paths import jupyter_runtime_dir

    return os.name == "posix" and len(jupyter_runtime_dir()) <= _MAX_RUNTIME_DIR


@functools.cache
def _classes() -> tuple[type, type]:
    """The kernel manager and the papermill engine (built lazily: importing papermill is slow)."""
    from jupyter_client import AsyncKernelManager
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args
    from traitlets import Any as AnyTrait
    from traitlets import Unicode, default

    class ChapterKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc" if _use_ipc() else "tcp"

        @default("ip")
        def _ip_default(self) -> str:
            # jupyter_client's default for ipc is "kernel-ipc", relative to the kernel's working
            # directory: the sockets would land in book/, where two runs collide and a build that
            # copies book/ meets them. Each kernel gets its own in the private runtime folder.
            if self.transport != "ipc":
                return super()._ip_default()
            from jupyter_core.paths import jupyter_runtime_dir

            os.makedirs(jupyter_runtime_dir(), exist_ok=True)
            return os.path.join(jupyter_runtime_dir(), f"kernel-{uuid.uuid4().hex[:12]}-ipc")

        # The kernel process's own stdout and stderr (what it prints outside any cell: a zmq
        # callback's traceback when it is stopped under load, a warning at start-up) go to the
        # chapter's log, not the console; cell output reaches the log through the client.
        kernel_output = AnyTrait(None, allow_none=True)

        async def _async_launch_kernel(self, kernel_cmd, **kw) -> None:
            if self.kernel_output is not None:
                kw["stdout"] = kw["stderr"] = self.kernel_output
            await super()._async_launch_kernel(kernel_cmd, **kw)

        async def _async_interrupt_kernel(self) -> None:
            # shutdown_kernel() interrupts first. A finished chapter's kernel is idle, an interrupted
            # chapter's kernel is killed: neither needs the SIGINT, whose only effect is log noise.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    class ChapterClient(PapermillNotebookClient):
        progress_file = AnyTrait(None, allow_none=True)
        description = Unicode("")

        def __init__(self, nb_man, **kw):
            super().__init__(nb_man, **kw)
            self._bar = None
            code = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code" and c.source.strip()]
            self._position = {index: n for n, index in enumerate(code, start=1)}
            if self.progress_file is not None:
                self.on_cell_start = self._show_cell

        def create_kernel_manager(self):
            km = super().create_kernel_manager()
            km.kernel_output = self.stderr_file
            return km

        def _show_cell(self, cell, cell_index) -> None:
            """Show "<chapter>: cell i/n" as code cell i of n starts."""
            position = self._position.get(cell_index)
            if position is None:
                return
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=len(self._position), initial=position, desc=self.description,
                                 file=self.progress_file, mininterval=0, dynamic_ncols=True,
                                 bar_format="{desc}: cell {n_fmt}/{total_fmt} |{bar}| {elapsed}")
            else:
                self._bar.update(position - self._bar.n)

        @contextlib.contextmanager
        def setup_kernel(self, **kwargs):
            try:
                with super().setup_kernel(**kwargs):
                    try:
                        yield
                    except KeyboardInterrupt:
                        # Ctrl-C reached this process only (the kernel has its own session). Kill the
                        # busy kernel and what it started (its process group) at once: a graceful
                        # shutdown would race the running cell and print pages of ZMQ errors.
                        self.shutdown_kernel = "immediate"
                        raise
            finally:
                if self._bar is not None:
                    self._bar.close()

    class ChapterEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            # NBClientEngine's method with ChapterClient in place of PapermillNotebookClient.
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs, timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout, kernel_name=kernel_name, log=logger, log_output=log_output,
                stdout_file=stdout_file, stderr_file=stderr_file)
            return ChapterClient(nb_man, **final_kwargs).execute()

    papermill_engines.register(ENGINE_NAME, ChapterEngine)
    return ChapterKernelManager, ChapterEngine


def execute_chapter(notebook: str | os.PathLike, output: str | os.PathLike, parameters: dict[str, Any], *,
                    log_file: IO[str], cwd: str | os.PathLike, description: str = "",
                    progress_file: IO[str] | None = None) -> None:
    """Execute ``notebook`` into ``output`` with ``parameters``; cell output streams go to ``log_file``.

    ``progress_file`` (e.g. ``sys.stderr``) shows "<description>: cell i/n"; None shows nothing.
    The notebook is saved to ``output`` as cells complete, so an interrupted or failed run leaves it
    there, partly executed. Raises what papermill raises; KeyboardInterrupt after killing the kernel.
    """
    import papermill

    kernel_manager, _ = _classes()
    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters, engine_name=ENGINE_NAME, kernel_name="python3",
        cwd=str(cwd), progress_bar=False, log_output=False, stdout_file=log_file, stderr_file=log_file,
        request_save_on_cell_execute=True, kernel_manager_class=kernel_manager, progress_file=progress_file,
        description=description,
    )
