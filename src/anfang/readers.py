"""Reader processes beside the primary server: ``anfang serve --read-workers N --read-port P``.

One server process is GIL-bound (docs/architecture.md "One primary process per node"); the read routes that only
query the database (person search, records, pages) can be served by more processes. The parent binds one listening
socket on the read port and hands it to N spawned reader processes (the kernel spreads connections among them).
Each builds the app with ``reader=True``: no background service is started (bus consumers, SIP, MQTT, media node,
ingest writer, schedulers stay the primary's), and only GET/HEAD of the stateless routes are answered — anything
else is 421 with the JSON error object (anfang.app.ReaderOnly). Sessions come from the database; audit entries
and the access monitor's daily counts are written in the database by each process (security/audit.py).

A reader that crashes or is killed is started again by the parent; a reader whose parent died (kill -9) exits
within a second.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
from typing import Any

import structlog

from anfang.config import Settings

log = structlog.get_logger(__name__)


def read_port(settings: Settings) -> int:
    return settings.read_port if settings.read_port is not None else settings.port + 1


def bind(host: str, port: int) -> socket.socket:
    """The readers' shared listening socket (IPv4 or IPv6 by the host's form)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _exit_with_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(1.0)


def reader_main(settings: Settings, sock: socket.socket, parent: int, uvicorn_kw: dict[str, Any]) -> None:
    """One reader process (spawned): the read-only app on the shared socket."""
    import uvicorn

    from anfang.app import create_app
    from anfang.store.engine import Store

    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="reader-parent-watch").start()
    app = create_app(settings, Store(settings.database_url), reader=True)  # type: ignore[arg-type]
    config = uvicorn.Config(app, log_level="warning", ws_per_message_deflate=False, **uvicorn_kw)
    uvicorn.Server(config).run(sockets=[sock])


class Readers:
    """The parent's handle on its reader processes: start, restart the ones that die, stop."""

    def __init__(self, settings: Settings, uvicorn_kw: dict[str, Any] | None = None) -> None:
        self.settings, self.uvicorn_kw = settings, dict(uvicorn_kw or {})
        self.n = max(0, int(settings.read_workers))
        self.port = read_port(settings)
        self.sock: socket.socket | None = None
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self._stopping = threading.Event()
        self._ctx = multiprocessing.get_context("spawn")
        self._watch: threading.Thread | None = None

    def _spawn(self) -> multiprocessing.process.BaseProcess:
        proc = self._ctx.Process(target=reader_main, name="anfang-reader", daemon=True,
                                 args=(self.settings, self.sock, os.getpid(), self.uvicorn_kw))
        proc.start()
        return proc

    def start(self) -> Readers:
        self.sock = bind(self.settings.host, self.port)
        self.procs = [self._spawn() for _ in range(self.n)]
        self._watch = threading.Thread(target=self._keep_alive, daemon=True, name="readers-watch")
        self._watch.start()
        return self

    def _keep_alive(self) -> None:
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self.procs):
                # exit code 0: it was told to stop (Ctrl+C reaches the whole process group) — not a crash
                if not proc.is_alive() and proc.exitcode != 0 and not self._stopping.is_set():
                    log.warning("reader_restarted", pid=proc.pid, exitcode=proc.exitcode)
                    self.procs[i] = self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        if self.sock is not None:
            self.sock.close()
