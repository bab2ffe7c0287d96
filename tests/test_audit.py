"""The audit chain records reads and writes of personal data, and detects any edit or deletion."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from anfang.cli import app
from anfang.registry.service import RegistryService
from anfang.security import audit
from anfang.security.models import AuditEntry
from world import build


def test_reads_are_audited_with_who_and_what(store) -> None:
    w = build(store)
    svc = RegistryService(store)
    svc.get_person(w.users["police"], w.person["zhang"])
    svc.search_persons(w.users["grid"], name="李娜")
    with store.session() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    read_one, search = rows[-2], rows[-1]
    assert (read_one.username, read_one.action, read_one.entity) == ("police", "read", "person")
    assert read_one.entity_ids == [str(w.person["zhang"])]
    assert read_one.client == "test"
    assert search.username == "grid" and "name=李娜" in search.detail
    assert search.entity_ids == [str(w.person["li"])]
    assert audit.verify(store).ok


def _fill(store, n: int = 5) -> None:
    w = build(store)
    svc = RegistryService(store)
    for _ in range(n):
        svc.get_person(w.users["police"], w.person["zhang"])


def test_edited_row_is_detected(store) -> None:
    _fill(store)
    assert audit.verify(store).ok
    with store.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(username="someone_else"))
    result = audit.verify(store)
    assert not result.ok
    assert any("第3条" in p and "篡改" in p for p in result.problems)


def test_deleted_row_is_detected(store) -> None:
    _fill(store)
    with store.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    result = audit.verify(store)
    assert not result.ok
    assert any("缺失" in p for p in result.problems)


def test_rewritten_chain_tail_is_detected(store) -> None:
    """An attacker who edits a row and recomputes its hash still breaks the link to the next row."""
    _fill(store)
    with store.session() as s:
        e = s.get(AuditEntry, 2)
        e.detail = "forged"
        e.hash = audit.entry_hash(e.seq, e.at, e.user_id, e.username, e.role, e.action, e.entity,
                                  list(e.entity_ids), e.detail, e.client, e.prev_hash)
    result = audit.verify(store)
    assert not result.ok
    assert any("第3条" in p for p in result.problems)


def test_cli_audit_verify_exit_codes(store, monkeypatch) -> None:
    _fill(store, 2)
    monkeypatch.setenv("ANFANG_DATABASE_URL", store.url)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "完整" in ok.output
    with store.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 1).values(action="export"))
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1
    assert "第1条" in bad.output


def test_concurrent_appends_keep_one_chain(store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from anfang.security.scope import Principal

    p = Principal.system("t")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: audit.record(store, p, "read", "person", [i]), range(80)))
    result = audit.verify(store)
    assert result.ok and result.checked == 80
