"""`anfang serve` as a real process, for the browser and live tests (one helper instead of a copy per file)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def anfang_serve(data_dir: Path, env: dict[str, str] | None = None, timeout: float = 60.0,
                 args: Sequence[str] = ()) -> Iterator[str]:
    """Start `anfang serve` on a free port with ``data_dir`` (its log in ``data_dir/server.log``), wait until
    /healthz answers, yield the base URL, stop the process afterwards. The environment is the test's without
    ANFANG_* settings, except the data keys the test encrypted with (conftest), plus ``env``; ``args``: more options
    of `anfang serve`."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    full["ANFANG_DATA_KEYS"] = os.environ["ANFANG_DATA_KEYS"]
    full.update(env or {})
    # the server runs with cwd=data_dir: a relative PYTHONPATH ("src") would import another checkout's anfang
    if full.get("PYTHONPATH"):
        full["PYTHONPATH"] = os.pathsep.join(str(Path(x).resolve()) for x in full["PYTHONPATH"].split(os.pathsep) if x)
    log_path = data_dir / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-c", "from anfang.cli import app; app()", "serve", "--data-dir",
                                 str(data_dir), "--host", "127.0.0.1", "--port", str(port), *args],
                                cwd=data_dir, env=full, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"anfang serve exited: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"anfang serve did not become healthy within {timeout:.0f} s")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
