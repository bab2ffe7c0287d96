"""A three-tier topology on one machine: writes one TOML file per node and starts ``anfang serve`` for each (and,
optionally, the community's forwarder as its own process). Used by ``anfang federation demo`` and the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomli_w

CITY, COUNTY, COMMUNITY = "350400", "350403", "350403001"  # 三明市, 三元区, a community of 三元区
DEMO_SECRET_PREFIX = "demo-node-key-"


def toml_text(values: dict[str, Any]) -> str:
    """TOML text of flat settings (None dropped: TOML has no null)."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return tomli_w.dumps({k: clean(v) for k, v in values.items() if v is not None})


@dataclass
class Node:
    name: str
    node_id: str
    role: str
    port: int
    config: Path
    database_url: str
    scheme: str = "http"
    proc: subprocess.Popen | None = None
    forwarder: subprocess.Popen | None = None
    log: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


def anfang_exe() -> list[str]:
    exe = Path(sys.executable).with_name("anfang")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from anfang.cli import main; main()"]


class Topology:
    """community → county → city (属地中转), or community → city (成条线中转) with ``direct=True``."""

    def __init__(self, root: Path, *, base_port: int, transport: str = "https", nats_url: str | None = None,
                 databases: dict[str, str] | None = None, direct: bool = False, separate_forwarder: bool = False,
                 tls: dict[str, str] | None = None, batch: int = 500) -> None:
        self.root, self.transport, self.nats_url, self.direct = root, transport, nats_url, direct
        self.separate_forwarder = separate_forwarder
        self.tls = tls or {}  # ca, server_cert, server_key, client_cert, client_key, client_ca
        root.mkdir(parents=True, exist_ok=True)
        dbs = databases or {}
        scheme = "https" if self.tls.get("server_cert") else "http"
        self.nodes: dict[str, Node] = {}
        for i, (name, node_id, role) in enumerate([("city", CITY, "city"), ("county", COUNTY, "county"),
                                                   ("community", COMMUNITY, "community")]):
            data = root / name
            url = dbs.get(name) or f"sqlite:///{(data / 'anfang.db').as_posix()}"
            self.nodes[name] = Node(name, node_id, role, base_port + i, root / f"{name}.toml", url,
                                    scheme if name != "community" else "http")
        self.batch = batch
        self.write_configs()

    def secret(self, node_id: str) -> str:
        return DEMO_SECRET_PREFIX + node_id

    def _link(self, child: Node, parent: Node) -> dict[str, Any]:
        link: dict[str, Any] = {"node_id": parent.node_id, "transport": self.transport,
                                "secret": self.secret(child.node_id)}
        if self.transport == "https":
            link["url"] = parent.url
            if self.tls.get("ca"):
                link["ca_file"] = self.tls["ca"]
            if self.tls.get("client_cert"):
                link.update(cert_file=self.tls["client_cert"], key_file=self.tls["client_key"])
        else:
            link["nats_url"] = self.nats_url
        return link

    def write_configs(self) -> None:
        city, county, community = self.nodes["city"], self.nodes["county"], self.nodes["community"]
        up = city if self.direct else county
        links = {"city": [], "county": [] if self.direct else [self._link(county, city)],
                 "community": [self._link(community, up)]}
        children = {"city": [{"node_id": community.node_id, "secret": self.secret(community.node_id)}]
                    if self.direct else [{"node_id": county.node_id, "secret": self.secret(county.node_id),
                                          "role": "county"}],
                    "county": [] if self.direct else [{"node_id": community.node_id,
                                                       "secret": self.secret(community.node_id)}],
                    "community": []}
        for name, n in self.nodes.items():
            values: dict[str, Any] = {
                "role": n.role, "node_id": n.node_id, "data_dir": str(self.root / name), "host": "127.0.0.1",
                "port": n.port, "database_url": n.database_url, "federation_parents": links[name],
                "federation_children": children[name], "federation_batch": self.batch,
                "federation_forwarder": not (self.separate_forwarder and name == "community"),
                "federation_nats_url": self.nats_url if self.transport == "nats" else None,
                "sip_enabled": False,
            }
            if n.scheme == "https":
                values.update(tls_certfile=self.tls["server_cert"], tls_keyfile=self.tls["server_key"],
                              tls_client_ca=self.tls.get("client_ca"))
            n.config.write_text(toml_text(values), encoding="utf-8")

    # -- processes ----------------------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, name: str) -> Node:
        n = self.nodes[name]
        n.log = self.root / f"{name}.log"
        out = open(n.log, "ab")  # noqa: SIM115 - owned by the child process
        n.proc = subprocess.Popen([*anfang_exe(), "serve", "--config", str(n.config)], stdout=out,
                                  stderr=subprocess.STDOUT, env=self._env(), start_new_session=True)
        return n

    def start_forwarder(self, name: str = "community") -> subprocess.Popen:
        n = self.nodes[name]
        out = open(self.root / f"{name}-forwarder.log", "ab")  # noqa: SIM115 - owned by the child process
        n.forwarder = subprocess.Popen([*anfang_exe(), "federation", "forward", "--config", str(n.config)],
                                       stdout=out, stderr=subprocess.STDOUT, env=self._env(), start_new_session=True)
        return n.forwarder

    def wait_ready(self, names: list[str] | None = None, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        verify: Any = self.tls.get("ca") or True
        cert = (self.tls["client_cert"], self.tls["client_key"]) if self.tls.get("client_cert") else None
        import ssl

        ctx: Any = verify
        if isinstance(verify, str):
            ctx = ssl.create_default_context(cafile=verify)
            if cert:
                ctx.load_cert_chain(*cert)
        for name in names or list(self.nodes):
            n = self.nodes[name]
            while True:
                if n.proc is not None and n.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {(n.log.read_text()[-2000:] if n.log else '')}")
                try:
                    if httpx.get(n.url + "/healthz", verify=ctx if n.scheme == "https" else True,
                                 timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready at {n.url}")
                time.sleep(0.1)

    @staticmethod
    def _kill(p: subprocess.Popen | None, sig: int) -> None:
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        self._kill(self.nodes[name].proc, sig)

    def kill_forwarder(self, name: str = "community") -> None:
        self._kill(self.nodes[name].forwarder, signal.SIGKILL)

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        """Bottom up (community first), so that no forwarder holds a connection to a node that is stopping."""
        for n in reversed(list(self.nodes.values())):
            self._kill(n.forwarder, sig)
            self._kill(n.proc, sig)
