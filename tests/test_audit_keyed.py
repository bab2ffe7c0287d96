"""The keyed audit chain (issue 17, item 6): a rewrite with the package's own unkeyed function and a truncated tail
are both detected — the first by the HMAC (key outside the database, beside the data keys), the second against the
append-only head file; the audit key rotates and rows under the old key still verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from anfang.cli import app
from anfang.config import Settings
from anfang.security import audit, crypto, keys
from anfang.security.models import AuditEntry
from anfang.security.scope import Principal


def _fill(store, n: int, start: int = 0) -> None:
    p = Principal.system("t")
    for i in range(start, start + n):
        audit.record(store, p, "read", "person", [i], detail=f"row {i}")


def test_rewrite_with_the_unkeyed_function_is_detected(store) -> None:
    _fill(store, 10)
    assert audit.verify(store).ok
    with store.session() as s:
        rows = list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        prev = rows[3].hash
        for e in rows[4:]:  # edit row 5, recompute every later hash and link with the public unkeyed function
            if e.seq == 5:
                e.detail = "forged"
            e.prev_hash = prev
            e.hash = audit.entry_hash(e.seq, e.at, e.user_id, e.username, e.role, e.action, e.entity,
                                      list(e.entity_ids), e.detail, e.client, e.prev_hash)
            prev = e.hash
    result = audit.verify(store)
    assert not result.ok
    assert any("第5条" in p for p in result.problems)


def test_rewrite_posing_as_legacy_rows_is_detected(store) -> None:
    _fill(store, 6)
    with store.session() as s:
        rows = list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        prev = rows[2].hash
        for e in rows[3:]:  # the tail rewritten as if written before the keyed chain existed
            e.key_id = None
            e.prev_hash = prev
            e.hash = audit.entry_hash(e.seq, e.at, e.user_id, e.username, e.role, e.action, e.entity,
                                      list(e.entity_ids), e.detail, e.client, e.prev_hash)
            prev = e.hash
    result = audit.verify(store)
    assert not result.ok and any("第4条" in p for p in result.problems)


def test_tail_truncation_is_detected_against_the_head_file(store, tmp_path: Path) -> None:
    heads = tmp_path / "audit-heads.jsonl"
    _fill(store, 10)
    assert audit.anchor_head(store, heads) == 10
    _fill(store, 3, start=10)
    assert audit.anchor_head(store, heads) == 13
    assert audit.anchor_head(store, heads) is None  # unchanged head: no new line
    assert audit.verify(store, heads=heads).ok
    with store.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq > 10))
    assert audit.verify(store).ok  # the chain alone cannot tell
    result = audit.verify(store, heads=heads)
    assert not result.ok and any("#13" in p for p in result.problems)
    lines = heads.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["seq"] == 13 and len(json.loads(lines[1])["hash"]) == 64


def test_forged_head_line_is_detected(store, tmp_path: Path) -> None:
    heads = tmp_path / "audit-heads.jsonl"
    _fill(store, 3)
    audit.anchor_head(store, heads)
    line = json.loads(heads.read_text())
    line["seq"] = 2
    heads.write_text(json.dumps(line) + "\n")
    result = audit.verify(store, heads=heads)
    assert not result.ok and any("头记录" in p for p in result.problems)


@pytest.fixture
def file_keys(tmp_path: Path):
    before = crypto._current
    settings = Settings(data_dir=tmp_path, data_keys=None)
    ring = crypto.configure_from_settings(settings)
    try:
        yield settings, ring
    finally:
        crypto.configure(before)


def test_audit_key_rotates_and_old_rows_still_verify(store, file_keys) -> None:
    settings, ring = file_keys
    _fill(store, 4)
    old = ring.audit_primary
    new = keys.add_audit_key(settings)
    assert new != old and ring.audit_primary == new
    _fill(store, 4, start=4)
    with store.session() as s:
        used = dict(s.execute(select(AuditEntry.key_id, func.count()).group_by(AuditEntry.key_id)).all())
    assert used == {old: 4, new: 4}
    assert audit.verify(store).ok
    # the data key's rotation and retirement leave the audit keys alone
    keys.add_primary_key(settings)
    keys.retire_old_keys(store, settings)
    assert audit.verify(store).ok
    key_file = json.loads((settings.data_dir / "keys" / "data-keys.json").read_text())
    assert new in key_file["audit_keys"] and key_file["audit_primary"] == new


def test_cli_verify_prints_the_full_head_hash_and_checks_heads(store, tmp_path: Path, monkeypatch) -> None:
    heads = tmp_path / "h.jsonl"
    _fill(store, 5)
    audit.anchor_head(store, heads)
    monkeypatch.setenv("ANFANG_DATABASE_URL", store.url)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--heads", str(heads)])
    assert ok.exit_code == 0, ok.output
    head = audit.verify(store).head_hash
    assert head in ok.output.replace("\n", "")
    with store.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 5))
    bad = runner.invoke(app, ["audit", "verify", "--heads", str(heads)])
    assert bad.exit_code == 1 and "#5" in bad.output


def test_concurrent_reads_share_audit_commits_and_each_is_recorded_before_it_returns(store, monkeypatch) -> None:
    """Item 5: audit appends of concurrent requests are grouped into one commit per batch (as the event recorder
    does), yet every call returns only once its own entry is committed."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import event

    write_batch = audit._write_batch

    def slow_disk(store_, batch):  # noqa: ANN001, ANN202 - a commit that takes 30 ms, as a busy disk's: requests
        time.sleep(0.03)  # arriving meanwhile must join the next batch (however the loaded CI box schedules them)
        return write_batch(store_, batch)

    monkeypatch.setattr(audit, "_write_batch", slow_disk)
    commits = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    p = Principal.system("t")
    barrier = threading.Barrier(16)

    def one(i: int) -> bool:
        barrier.wait()
        seq = audit.record(store, p, "read", "person", [i])
        with store.session() as s:  # another session sees it at once: committed before the answer leaves
            return s.get(AuditEntry, seq) is not None

    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(one, range(64)))
    assert all(seen)
    result = audit.verify(store)
    assert result.ok and result.checked == 64
    audit_commits = len(commits) - 64  # each check above is a session of its own (one commit each)
    assert audit_commits < 32, f"{audit_commits} commits for 64 concurrent audit entries"


def test_heads_travel_up_the_federation_link_and_the_parent_detects_truncation(store, tmp_path: Path) -> None:
    """The child's anchored heads go up as ``audit_head`` records; the parent keeps them, and the heads it hands back
    detect a truncated tail at the child."""
    from anfang.federation.models import FedOutbox
    from anfang.federation.outbox import Outbox, audit_heads_of, send_audit_head
    from anfang.federation.schema import SCHEMA, Batch, Envelope
    from anfang.federation.service import FederationService
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade

    outbox = Outbox("c1", ["p1"])
    outbox.install(store)
    try:
        _fill(store, 6)
        local = tmp_path / "heads.jsonl"
        assert audit.anchor_head(store, local, "c1", sink=lambda line: send_audit_head(store, line)) == 6
        with store.session() as s:
            rows = [r for r in s.scalars(select(FedOutbox)) if r.entity == "audit_head"]
        assert [r.parent for r in rows] == ["p1"]
    finally:
        outbox.uninstall(store)
    parent_url = f"sqlite:///{(tmp_path / 'parent.db').as_posix()}"
    upgrade(parent_url)
    parent = Store(parent_url)
    try:
        items = [Envelope.model_validate_json(r.envelope) for r in rows]
        FederationService(parent, node_id="p1", role="county").apply(
            Batch.model_validate({"schema": SCHEMA, "sender": "c1", "items": [i.model_dump() for i in items]}), "c1")
        from_parent = tmp_path / "from-parent.jsonl"
        from_parent.write_text("".join(json.dumps(h) + "\n" for h in audit_heads_of(parent, "c1")))
    finally:
        parent.dispose()
    assert audit.verify(store, heads=from_parent).ok
    with store.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq > 4))
    result = audit.verify(store, heads=from_parent)
    assert not result.ok and any("#6" in p for p in result.problems)
