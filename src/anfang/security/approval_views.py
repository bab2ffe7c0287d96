"""HTTP edge of query authorisation, traceable exports and tracing (docs/security.md).

API under ``/api/security``: approval requests (mine / to decide, approve, reject, withdraw), my exports, trace
a file. Console pages (zh-CN first): ``/security/approvals`` (the requester's requests, the supervisor's pending
ones with approve / reject), ``/security/exports`` (a watermarked export; a held one shows its request), and
``/security/trace`` (upload a file or paste rows: who exported it).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.background import BackgroundTask

from anfang.core import timefmt
from anfang.core.errors import Forbidden, ValidationError, pick
from anfang.security import approvals, audit
from anfang.security.records import ExportRecord
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.security.views import CurrentPrincipal
from anfang.security.watermark import VIEW_FORMAT
from anfang.store.engine import Store

# Who may trace a leaked file (reads the export log of everyone): the administrators who answer for leaks.
TRACERS = frozenset({Role.city_admin, Role.county_admin})
MAX_TRACE_BYTES = 50 * 1024 * 1024
EXPORT_KINDS = ("persons", "houses", "units", "vehicles", "addresses", "regions")
# what an export log row's kind is called on the page (the key stays in the API and the log)
EXPORT_LABELS: dict[str, tuple[str, str]] = {
    "persons": ("人员", "persons"), "houses": ("房屋", "houses"), "units": ("单位", "work units"),
    "vehicles": ("车辆", "vehicles"), "addresses": ("地址", "addresses"), "regions": ("行政区划", "regions"),
    "viid-image": ("抓拍图片", "capture image"), "watchlist-photo": ("布控照片", "watchlist photo"),
    "doorplate-sheet": ("门牌", "door plates"), "circular": ("通报", "circular"),
    "video-download": ("录像下载", "video download"), "video-snapshot": ("视频抓图", "video snapshot"),
}
# a traced file's type and an export's file format, and how a mark was found (security/trace.py), on the page
FORMAT_LABELS: dict[str, tuple[str, str]] = {
    "image": ("图片", "image"), "video": ("视频", "video"), "text": ("文本", "text"), "view": ("屏幕查看", "viewed"),
}
EVIDENCE_LABELS: dict[str, tuple[str, str]] = {
    "zero_width": ("零宽字符", "zero-width marks"), "metadata": ("元数据", "metadata"),
    "lsb": ("像素水印", "pixel mark"), "request_id": ("请求号", "request number"), "row_keys": ("记录键", "row keys"),
}

api = APIRouter(prefix="/api/security", tags=["data security 数据安全"])


def _store(request: Request) -> Store:
    return request.app.state.store


def _lang(request: Request) -> str:
    from anfang.web.views import lang_of

    return lang_of(request)


class DecisionIn(BaseModel):
    note: str = Field("", max_length=300, description="审批意见（驳回时必填） / note (required to reject)")


@api.get("/approvals", summary="审批申请：我的 / 待我审批 / approval requests: mine or to decide")
def api_approvals(request: Request, p: CurrentPrincipal,
                  box: Annotated[str, Query(pattern="^(mine|todo)$")] = "mine") -> dict[str, Any]:
    store, lang = _store(request), _lang(request)
    rows = approvals.my_requests(store, p) if box == "mine" else approvals.to_decide(store, p)
    return {"box": box, "items": [approvals.approval_dict(r, lang) for r in rows]}


@api.post("/approvals/{approval_id}/approve", summary="批准 / approve")
def api_approve(request: Request, p: CurrentPrincipal, approval_id: int, body: DecisionIn) -> dict[str, Any]:
    return approvals.decide(_store(request), p, approval_id, True, body.note)


@api.post("/approvals/{approval_id}/reject", summary="驳回 / reject")
def api_reject(request: Request, p: CurrentPrincipal, approval_id: int, body: DecisionIn) -> dict[str, Any]:
    return approvals.decide(_store(request), p, approval_id, False, body.note)


@api.post("/approvals/{approval_id}/withdraw", summary="撤回本人申请 / withdraw my request")
def api_withdraw(request: Request, p: CurrentPrincipal, approval_id: int) -> dict[str, Any]:
    return approvals.withdraw(_store(request), p, approval_id)


@api.get("/policy", summary="数据查询授权策略 / the query policy in force")
def api_policy(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    pol = approvals.load_policy()
    return {"queries": {k: {"zh": zh, "en": en} for k, (zh, en) in pol.queries.items()},
            "mine": {q: pol.level(p.role, q) for q in pol.queries}, "bulk_export_rows": pol.bulk_export_rows,
            "pending_hours": pol.pending_hours, "approved_hours": pol.approved_hours,
            "wide_levels": sorted(pol.wide_levels)}


def _export_view(r: ExportRecord) -> dict[str, Any]:
    return {"request_id": r.request_id, "at": timefmt.fmt(r.at),
            "username": r.username, "kind": r.kind, "file_format": r.file_format, "filename": r.filename,
            "rows": r.rows, "approval_id": r.approval_id, "reason": r.reason, "filters": r.filters}


def my_exports(store: Store, p: Principal, limit: int = 50) -> list[dict[str, Any]]:
    with store.session() as s:
        rows = s.scalars(select(ExportRecord).where(ExportRecord.user_id == p.user_id,
                                                    ExportRecord.username == p.username,
                                                    ExportRecord.file_format != VIEW_FORMAT)  # views are no exports
                         .order_by(ExportRecord.id.desc()).limit(limit))
        return [_export_view(r) for r in rows]


@api.get("/exports", summary="我的导出记录 / my exports")
def api_exports(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    return {"items": my_exports(_store(request), p)}


def _trace(store: Store, p: Principal, data: bytes, filename: str) -> dict[str, Any]:
    from anfang.security.trace import trace_bytes

    if p.role not in TRACERS:
        raise Forbidden("仅市、县级管理员可进行泄露溯源 / only city and county admins may trace files")
    if len(data) > MAX_TRACE_BYTES:
        raise ValidationError("文件过大（上限 50 MB） / file too large (50 MB)")
    result = trace_bytes(store, data, filename)
    best = result.best
    audit.record(store, p, "trace", "export_log", [f.request_id for f in result.findings][:20],
                 f"file={filename[:80]} found={best.username if best else ''}")
    return result.to_dict()


@api.post("/trace", summary="泄露溯源：上传文件或粘贴的行 / trace a leaked file or pasted rows")
async def api_trace(request: Request, p: CurrentPrincipal, file: UploadFile = File(...)) -> dict[str, Any]:
    data = await file.read(MAX_TRACE_BYTES + 1)
    return await run_in_threadpool(_trace, _store(request), p, data, file.filename or "")


# ---- console pages -------------------------------------------------------------------------------------------
def _pages() -> APIRouter:
    from anfang.web.views import ConsoleRoute

    return APIRouter(route_class=ConsoleRoute, include_in_schema=False)


pages = _pages()


def _render(request: Request, template: str, p: Principal, status: int = 200, **ctx: Any) -> HTMLResponse:
    from anfang.web.views import lang_of, render

    lang = lang_of(request)
    i = 0 if lang.startswith("zh") else 1

    def format_label(f: str) -> str:  # xlsx, csv, pdf, mp4: a file format's own name; the rest in words
        return FORMAT_LABELS[f][i] if f in FORMAT_LABELS else f.upper()

    return render(request, template, p, status=status, nav="security",
                  kind_label=lambda k: EXPORT_LABELS.get(k, (k, k))[i], format_label=format_label,
                  evidence_label=lambda m: EVIDENCE_LABELS.get(m, (m, m))[i],
                  one_language=lambda text: pick(text, lang), **ctx)


def _check_csrf(request: Request, token: str) -> None:
    from anfang.web.views import check_csrf

    check_csrf(request, token)


@pages.get("/security/approvals")
def approvals_page(request: Request, p: CurrentPrincipal) -> HTMLResponse:
    store, lang = _store(request), _lang(request)
    mine = [approvals.approval_dict(r, lang) for r in approvals.my_requests(store, p)]
    todo = [approvals.approval_dict(r, lang) for r in approvals.to_decide(store, p)]
    done = [approvals.approval_dict(r, lang) for r in approvals.decided_by(store, p)]
    return _render(request, "security_approvals.html", p, mine=mine, todo=todo, done=done,
                   policy=approvals.load_policy())


@pages.post("/security/approvals/{approval_id}/decide")
def approvals_decide(request: Request, p: CurrentPrincipal, approval_id: int, decision: str = Form(""),
                     note: str = Form(""), csrf_token: str = Form("")) -> RedirectResponse:
    _check_csrf(request, csrf_token)
    if decision not in ("approve", "reject"):
        raise ValidationError("请选择批准或驳回 / choose approve or reject")
    approvals.decide(_store(request), p, approval_id, decision == "approve", note)
    return RedirectResponse(f"/security/approvals#a{approval_id}", status_code=303)


@pages.post("/security/approvals/{approval_id}/withdraw")
def approvals_withdraw(request: Request, p: CurrentPrincipal, approval_id: int,
                       csrf_token: str = Form("")) -> RedirectResponse:
    _check_csrf(request, csrf_token)
    approvals.withdraw(_store(request), p, approval_id)
    return RedirectResponse(f"/security/approvals#a{approval_id}", status_code=303)


@pages.get("/security/exports")
def exports_page(request: Request, p: CurrentPrincipal) -> HTMLResponse:
    return _render(request, "security_exports.html", p, kinds=EXPORT_KINDS, exports=my_exports(_store(request), p),
                   form={}, held=None, error=None)


@pages.get("/security/exports/download")
def exports_download(request: Request, p: CurrentPrincipal, kind: str = "persons", format: str = "xlsx",
                     reason: str = "", approval_id: int | None = None, county_code: str = "", town_code: str = "",
                     community_code: str = "", address_prefix: str = "") -> Response:
    from anfang.registry.exporter import export_authorised

    store = _store(request)
    filters = {k: v for k, v in {"county_code": county_code, "town_code": town_code,
                                 "community_code": community_code, "address_prefix": address_prefix}.items() if v}
    form = {"kind": kind, "format": format, "reason": reason, **filters}
    try:
        out = export_authorised(store, kind, format, p, reason=reason or None, approval_id=approval_id, **filters)
    except (approvals.ApprovalPending, approvals.ReasonRequired) as exc:
        held = exc.detail if isinstance(exc, approvals.ApprovalPending) else None
        return _render(request, "security_exports.html", p, status=exc.status, kinds=EXPORT_KINDS,
                       exports=my_exports(store, p), form=form, held=held, error=exc.message)
    return FileResponse(out.path, media_type=out.media_type, background=BackgroundTask(out.cleanup),
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(out.filename)}",
                                 "X-Anfang-Export-Request": out.mark.request_id, "Cache-Control": "no-store"})


@pages.get("/security/trace")
def trace_page(request: Request, p: CurrentPrincipal) -> HTMLResponse:
    if p.role not in TRACERS:
        raise Forbidden("仅市、县级管理员可进行泄露溯源 / only city and county admins may trace files")
    return _render(request, "security_trace.html", p, result=None)


@pages.post("/security/trace")
async def trace_submit(request: Request, p: CurrentPrincipal, file: UploadFile | None = File(None),
                       pasted: str = Form(""), csrf_token: str = Form("")) -> HTMLResponse:
    _check_csrf(request, csrf_token)
    if file is not None and file.filename:
        data, name = await file.read(MAX_TRACE_BYTES + 1), file.filename
    elif pasted.strip():
        data, name = pasted.encode("utf-8"), "pasted.txt"
    else:
        raise ValidationError("请上传文件或粘贴文本 / upload a file or paste rows")
    result = await run_in_threadpool(_trace, _store(request), p, data, name)
    return await run_in_threadpool(_render, request, "security_trace.html", p, result=result)


def pending_badge(request: Request) -> int:
    """Requests waiting for the logged-in supervisor's decision (the console's navigation shows the count)."""
    from anfang.core.errors import AnfangError
    from anfang.security.views import current_principal

    try:
        p = current_principal(request)
    except AnfangError:
        return 0
    if p.role not in (Role.police, Role.county_admin, Role.city_admin):
        return 0
    return approvals.pending_count(_store(request), p)


def mount(app: FastAPI) -> None:
    """API and console pages of query authorisation, exports and tracing."""
    from anfang.web.views import _env

    _env.globals["approvals_pending"] = pending_badge  # the count beside 数据查询审批 in the navigation
    app.include_router(api)
    app.include_router(pages)
