"""HTTP API of the registry (一标三实): thin routes over RegistryService and the metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from anfang.registry import metrics
from anfang.registry.schemas import (
    AddressIn,
    HouseIn,
    HousePatch,
    Page,
    PersonIn,
    PersonPatch,
    PlatePatch,
    UnitIn,
    UnitPatch,
    VehicleIn,
    Verification,
)
from anfang.registry.service import RegistryService
from anfang.security import approvals, audit
from anfang.security.views import CurrentPrincipal

router = APIRouter(prefix="/api", tags=["registry 一标三实"])
PageNo = Annotated[int, Query(ge=1, description="页码")]
PageSize = Annotated[int, Query(ge=1, le=200, description="每页条数")]
Reason = Annotated[str | None, Query(max_length=500, description="查询事由（数据查询授权） / reason for the query")]
ApprovalId = Annotated[int | None, Query(ge=1, description="已批准的审批申请号 / approved request number")]


def svc(request: Request) -> RegistryService:
    return request.app.state.registry


# ---- persons -------------------------------------------------------------------------------------------------
@router.get("/persons", summary="人员查询 / search persons", response_model=Page,
            responses=approvals.HELD_RESPONSES)
def search_persons(request: Request, p: CurrentPrincipal, id_number: str | None = None, name: str | None = None,
                   phone: str | None = None, address_prefix: str | None = None, plate: str | None = None,
                   label: str | None = None, page: PageNo = 1, size: PageSize = 20,
                   reason: Reason = None, approval_id: ApprovalId = None) -> Page:
    if not (id_number or name or phone or plate):  # a list of everyone in an area, not a lookup of one person
        approvals.authorise_wide_search(request.app.state.store, p, "persons", {"address_prefix": address_prefix,
                                                                                "label": label}, reason, approval_id)
    return svc(request).search_persons(p, id_number=id_number, name=name, phone=phone,
                                       address_prefix=address_prefix, plate=plate, label=label, page=page, size=size)


@router.post("/persons", status_code=201, summary="登记人员 / register a person")
def create_person(request: Request, p: CurrentPrincipal, body: PersonIn) -> dict:
    return svc(request).create_person(p, body)


@router.get("/persons/{person_id}", summary="人员详情 / person")
def get_person(request: Request, p: CurrentPrincipal, person_id: int) -> dict:
    return svc(request).get_person(p, person_id)


@router.patch("/persons/{person_id}", summary="修改人员 / update a person")
def update_person(request: Request, p: CurrentPrincipal, person_id: int, body: PersonPatch) -> dict:
    return svc(request).update_person(p, person_id, body)


@router.delete("/persons/{person_id}", status_code=204, summary="删除人员 / delete a person")
def delete_person(request: Request, p: CurrentPrincipal, person_id: int) -> None:
    svc(request).delete_person(p, person_id)


@router.post("/{entity}/{record_id}/verification", summary="核实 / set verification state")
def set_verification(request: Request, p: CurrentPrincipal, entity: str, record_id: int, body: Verification) -> dict:
    entity = {"persons": "person", "houses": "house", "units": "unit"}.get(entity, entity)
    return svc(request).set_verification(p, entity, record_id, body.state)


# ---- addresses -----------------------------------------------------------------------------------------------
@router.get("/addresses", summary="地址查询 / search addresses", response_model=Page)
def search_addresses(request: Request, p: CurrentPrincipal, prefix: str | None = None, level: str | None = None,
                     page: PageNo = 1, size: PageSize = 20) -> Page:
    return svc(request).search_addresses(p, prefix=prefix, level=level, page=page, size=size)


@router.get("/addresses/roots", summary="小区/村地址 / community-level addresses")
def address_roots(request: Request, p: CurrentPrincipal, community_code: str | None = None) -> list[dict]:
    return svc(request).address_roots(p, community_code)


@router.post("/addresses", status_code=201, summary="新增地址 / add an address")
def create_address(request: Request, p: CurrentPrincipal, body: AddressIn) -> dict:
    return svc(request).create_address(p, body)


@router.get("/addresses/{address_id}", summary="地址详情 / address with children, house, persons")
def get_address(request: Request, p: CurrentPrincipal, address_id: int) -> dict:
    return svc(request).get_address(p, address_id)


@router.patch("/addresses/{address_id}/plate", summary="门牌状态 / door plate state")
def set_plate(request: Request, p: CurrentPrincipal, address_id: int, body: PlatePatch) -> dict:
    return svc(request).set_plate_state(p, address_id, body)


# ---- houses --------------------------------------------------------------------------------------------------
@router.get("/houses", summary="房屋查询 / search houses", response_model=Page)
def search_houses(request: Request, p: CurrentPrincipal, address_prefix: str | None = None, use: str | None = None,
                  verification: str | None = None, page: PageNo = 1, size: PageSize = 20) -> Page:
    return svc(request).search_houses(p, address_prefix=address_prefix, use=use, verification=verification,
                                      page=page, size=size)


@router.post("/houses", status_code=201, summary="登记房屋 / register a house")
def create_house(request: Request, p: CurrentPrincipal, body: HouseIn) -> dict:
    return svc(request).create_house(p, body)


@router.get("/houses/{house_id}", summary="房屋详情 / house with residents")
def get_house(request: Request, p: CurrentPrincipal, house_id: int) -> dict:
    return svc(request).get_house(p, house_id)


@router.patch("/houses/{house_id}", summary="修改房屋 / update a house")
def update_house(request: Request, p: CurrentPrincipal, house_id: int, body: HousePatch) -> dict:
    return svc(request).update_house(p, house_id, body)


# ---- units ---------------------------------------------------------------------------------------------------
@router.get("/units", summary="单位查询 / search work units", response_model=Page)
def search_units(request: Request, p: CurrentPrincipal, name: str | None = None, credit_code: str | None = None,
                 address_prefix: str | None = None, page: PageNo = 1, size: PageSize = 20) -> Page:
    return svc(request).search_units(p, name=name, credit_code=credit_code, address_prefix=address_prefix,
                                     page=page, size=size)


@router.post("/units", status_code=201, summary="登记单位 / register a work unit")
def create_unit(request: Request, p: CurrentPrincipal, body: UnitIn) -> dict:
    return svc(request).create_unit(p, body)


@router.get("/units/{unit_id}", summary="单位详情 / work unit")
def get_unit(request: Request, p: CurrentPrincipal, unit_id: int) -> dict:
    return svc(request).get_unit(p, unit_id)


@router.patch("/units/{unit_id}", summary="修改单位 / update a work unit")
def update_unit(request: Request, p: CurrentPrincipal, unit_id: int, body: UnitPatch) -> dict:
    return svc(request).update_unit(p, unit_id, body)


# ---- vehicles ------------------------------------------------------------------------------------------------
@router.get("/vehicles", summary="车辆查询 / search vehicles", response_model=Page)
def search_vehicles(request: Request, p: CurrentPrincipal, plate: str | None = None,
                    owner_person_id: int | None = None, page: PageNo = 1, size: PageSize = 20) -> Page:
    return svc(request).search_vehicles(p, plate=plate, owner_person_id=owner_person_id, page=page, size=size)


@router.post("/vehicles", status_code=201, summary="登记车辆 / register a vehicle")
def create_vehicle(request: Request, p: CurrentPrincipal, body: VehicleIn) -> dict:
    return svc(request).create_vehicle(p, body)


# ---- regions and metrics -------------------------------------------------------------------------------------
@router.get("/regions", summary="行政区划 / regions")
def regions(request: Request, p: CurrentPrincipal, parent_code: str | None = None) -> list[dict]:
    return svc(request).regions(p, parent_code)


@router.get("/metrics", summary="一标三实指标 / registry figures")
def get_metrics(request: Request, p: CurrentPrincipal, level: str = "county") -> dict:
    rows = metrics.compute(request.app.state.store, p, level)
    return {"level": level, "targets": {k: {"target": t, "label": zh, "label_en": en}
                                        for k, (t, zh, en) in metrics.TARGETS.items()},
            "rows": [r.to_dict() for r in rows]}


@router.get("/metrics/below", summary="未达标记录 / records below target")
def get_below(request: Request, p: CurrentPrincipal, metric: str, region_code: str | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict]:
    rows = metrics.below_target(request.app.state.store, p, metric, region_code, limit)
    if rows and rows[0]["entity"] == "person":
        audit.record(request.app.state.store, p, "read", "person", [r["id"] for r in rows], detail=f"below:{metric}")
    return rows


# ---- export (数据查询授权 + 导出水印) ----------------------------------------------------------------------------
@router.get("/export/{kind}", summary="导出 XLSX/CSV（带水印；批量导出须事由与审批） / watermarked export",
            responses=approvals.HELD_RESPONSES)
def export_kind(request: Request, p: CurrentPrincipal, kind: str,
                format: Annotated[str, Query(pattern="^(xlsx|csv)$", description="xlsx | csv")] = "xlsx",
                reason: Reason = None, approval_id: ApprovalId = None, county_code: str | None = None,
                town_code: str | None = None, community_code: str | None = None, address_prefix: str | None = None,
                level: str | None = None, verification: str | None = None, population_type: str | None = None,
                use: str | None = None) -> Response:
    from urllib.parse import quote

    from fastapi.responses import FileResponse
    from starlette.background import BackgroundTask

    from anfang.registry.exporter import export_authorised

    given = {"county_code": county_code, "town_code": town_code, "community_code": community_code,
             "address_prefix": address_prefix, "level": level, "verification": verification,
             "population_type": population_type, "use": use}
    filters = {k: v for k, v in given.items() if v not in (None, "")}  # one a kind does not take is a 422
    out = export_authorised(request.app.state.store, kind, format, p, reason=reason, approval_id=approval_id, **filters)
    return FileResponse(out.path, media_type=out.media_type, background=BackgroundTask(out.cleanup),
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(out.filename)}",
                                 "X-Anfang-Export-Request": out.mark.request_id, "Cache-Control": "no-store"})
