"""Jurisdiction scoping: who is asking, and the SQL condition that limits what he may see.

An officer sees only his 警务区, a grid worker only his grid, property staff only their community, a county admin
only his county, a resident only himself. Every registry query is built through these conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, true

from anfang.registry.models import Address, Person
from anfang.security.roles import Role


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int | None
    username: str
    role: Role
    county_code: str | None = None
    community_code: str | None = None
    police_area_id: int | None = None
    grid_id: int | None = None
    person_id: int | None = None
    client: str | None = None  # where the request came from (IP, "cli")

    @classmethod
    def system(cls, username: str = "system", client: str = "cli") -> Principal:
        """The operator at the command line: full scope, but still audited under his name."""
        return cls(user_id=None, username=username, role=Role.city_admin, client=client)

    @classmethod
    def anonymous(cls, username: str = "anonymous", client: str | None = None) -> Principal:
        return cls(user_id=None, username=username[:64], role=Role.anonymous, client=client)

    @property
    def sees_everything(self) -> bool:
        return self.role is Role.city_admin


def address_condition(p: Principal) -> ColumnElement[bool]:
    """Condition on the Address table for the addresses within p's jurisdiction."""
    match p.role:
        case Role.city_admin:
            return true()
        case Role.county_admin:
            return Address.county_code == p.county_code if p.county_code else false()
        case Role.police:
            return Address.police_area_id == p.police_area_id if p.police_area_id else false()
        case Role.grid_worker:
            return Address.grid_id == p.grid_id if p.grid_id else false()
        case Role.property_staff:
            return Address.community_code == p.community_code if p.community_code else false()
        case Role.resident:
            if p.person_id is None:
                return false()
            return Address.id.in_(
                Person.__table__.select().with_only_columns(Person.address_id).where(Person.id == p.person_id)
            )
    return false()


def person_condition(p: Principal) -> ColumnElement[bool]:
    """Condition on Person (joined to its Address) for the persons p may see."""
    if p.role is Role.city_admin:
        return true()
    if p.role is Role.resident:
        return Person.id == p.person_id if p.person_id else false()
    return address_condition(p)

