"""Roles and what each may see. Policy is data here, read by scope and masking."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    city_admin = "city_admin"
    county_admin = "county_admin"
    police = "police"  # 社区民警, scoped to a 警务区
    grid_worker = "grid_worker"  # 网格员, scoped to a grid
    property_staff = "property_staff"  # 物业, scoped to a community
    resident = "resident"  # 居民, sees own record
    anonymous = "anonymous"  # not logged in (public scan pages, failed logins); sees no personal data


ROLE_LABELS: dict[Role, tuple[str, str]] = {
    Role.city_admin: ("市级管理员", "city admin"),
    Role.county_admin: ("县级管理员", "county admin"),
    Role.police: ("社区民警", "community police officer"),
    Role.grid_worker: ("网格员", "grid worker"),
    Role.property_staff: ("物业人员", "property staff"),
    Role.resident: ("居民", "resident"),
    Role.anonymous: ("访客", "visitor"),
}

# Which personal fields each role sees unmasked (data minimisation, PIPL). The community police officer works
# cases and needs full identity numbers; grid workers call residents and need phones; administrators supervise
# figures and see both masked; property staff contact owners but never see identity numbers.
# "owner_phone" is the phone of a house owner wherever it shows: the house's owner column, the owner's own person
# record, a door plate's owner line, an export. A role that sees phones sees owners' phones too; property staff see
# only owners' phones. security.masking applies this one table on every page, API, export and plate view.
UNMASKED_FIELDS: dict[Role, frozenset[str]] = {
    Role.city_admin: frozenset(),
    Role.county_admin: frozenset(),
    Role.police: frozenset({"id_number", "phone", "owner_phone"}),
    Role.grid_worker: frozenset({"phone", "owner_phone"}),
    Role.property_staff: frozenset({"owner_phone"}),
    Role.resident: frozenset({"id_number", "phone", "owner_phone"}),  # only ever his own record
    Role.anonymous: frozenset(),
}

# Roles allowed to change registry records (within their scope).
WRITERS: frozenset[Role] = frozenset({Role.city_admin, Role.county_admin, Role.police, Role.grid_worker})
# Roles allowed to mark a record verified.
VERIFIERS: frozenset[Role] = frozenset({Role.police, Role.grid_worker, Role.county_admin, Role.city_admin})
# Roles allowed to bulk import / export.
BULK: frozenset[Role] = frozenset({Role.city_admin, Role.county_admin})


def role_label(role: str, lang: str = "zh-CN") -> str:
    zh, en = ROLE_LABELS[Role(role)]
    return zh if lang.startswith("zh") else en
