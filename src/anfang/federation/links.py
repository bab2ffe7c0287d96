"""Who a node talks to: its parent(s) and the credentials of its children, read from the settings
(``federation_parents`` / ``federation_children``, docs/federation.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ParentLink(BaseModel):
    """One parent this node forwards to. A community under 属地中转 names its county; under 成条线中转 the city."""

    node_id: str = Field(max_length=32)
    transport: Literal["https", "nats"] = "https"
    url: str | None = None  # https: the parent's base URL (http:// allowed on loopback / in tests)
    secret: str  # the node credential shared with this parent (HMAC-SHA256 request signing)
    nats_url: str | None = None  # nats: the JetStream server (default: settings.nats_url)
    ca_file: str | None = None  # https: CA bundle that signed the parent's certificate
    cert_file: str | None = None  # https: this node's client certificate (mTLS), with key_file
    key_file: str | None = None


class ChildCred(BaseModel):
    node_id: str = Field(max_length=32)
    secret: str
    role: str = "community"


def parents_of(settings: Any) -> list[ParentLink]:
    return [ParentLink.model_validate(p) for p in (settings.federation_parents or [])]


def children_of(settings: Any) -> dict[str, ChildCred]:
    out = {}
    for c in settings.federation_children or []:
        cred = ChildCred.model_validate(c)
        out[cred.node_id] = cred
    return out
