"""ipykernel's launcher, with the kernel's IOPub pipe on a Unix socket too.

Besides its five channels, ipykernel binds a PULL socket on a random TCP port of 127.0.0.1,
where forked subprocesses (``multiprocessing`` with fork) push their output. With the
channels over IPC in the server's private folder (``hubforge.channels``), this puts that pipe
beside them (``<the kernel's ipc prefix>-pipe``), so the kernel listens on no TCP port at all.
``PrivateKernelManager`` starts Python kernels with ``-m hubforge.kernel_launcher`` instead of
``-m ipykernel_launcher``; with TCP channels, or an ipykernel without these hooks, the kernel
is ipykernel's own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import warnings
from pathlib import Path


def _pipe_over_ipc() -> None:
    import zmq
    from ipykernel import iostream, kernelapp
    from zmq.eventloop.zmqstream import ZMQStream

    thread = iostream.IOPubThread
    if not all(hasattr(thread, n) for n in ("_setup_pipe_in", "_setup_pipe_out")):
        return
    tcp_in, tcp_out = thread._setup_pipe_in, thread._setup_pipe_out

    def setup_pipe_in(self) -> None:
        app = kernelapp.IPKernelApp.instance() if kernelapp.IPKernelApp.initialized() else None
        if app is None or app.transport != "ipc":
            return tcp_in(self)
        self._pipe_uuid = os.urandom(16)  # as ipykernel: only its children know it
        pipe_in = self.socket.context.socket(zmq.PULL)
        pipe_in.linger = 0
        path = f"{app.ip}-pipe"
        try:
            pipe_in.bind(f"ipc://{path}")
        except zmq.ZMQError as e:
            message = f"No IOPub pipe at {path}: {e}; output of forked subprocesses is lost"
            warnings.warn(message, stacklevel=2)
            self._pipe_flag = False
            pipe_in.close()
            return None
        pid = os.getpid()
        atexit.register(lambda: os.getpid() == pid and Path(path).unlink(missing_ok=True))
        self._hubforge_pipe = f"ipc://{path}"
        self._pipe_in = ZMQStream(pipe_in, self.io_loop)
        self._pipe_in.on_recv(self._handle_pipe_msg)
        return None

    def setup_pipe_out(self):
        address = getattr(self, "_hubforge_pipe", None)
        if address is None:
            return tcp_out(self)
        ctx = zmq.Context()  # a new one after fork, as ipykernel
        pipe_out = ctx.socket(zmq.PUSH)
        pipe_out.linger = 3000
        pipe_out.connect(address)
        return ctx, pipe_out

    thread._setup_pipe_in = setup_pipe_in
    thread._setup_pipe_out = setup_pipe_out


def _no_debugger() -> None:
    """The kernel offers no debugger: debugpy can only listen on TCP, and on a machine shared
    by per-user accounts any account may connect to a loopback port (and run code in this
    kernel). JupyterLab then shows no debug button for it."""
    with contextlib.suppress(ImportError):
        from ipykernel import debugger

        debugger._is_debugpy_available = False


def main() -> None:
    # as ipykernel_launcher: not the working folder on sys.path while the kernel loads
    if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
        del sys.path[0]
    with contextlib.suppress(ImportError):
        _pipe_over_ipc()
    if os.environ.get("HUBFORGE_KERNEL_DEBUGGER") == "off":
        _no_debugger()
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
