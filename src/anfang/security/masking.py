"""Masking of personal data for roles that do not need it in full."""

from __future__ import annotations

from anfang.security.roles import UNMASKED_FIELDS, Role


def mask_id_number(value: str | None) -> str | None:
    """350102********123X: region kept, birth date and serial hidden."""
    if not value:
        return value
    if len(value) < 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_phone(value: str | None) -> str | None:
    """138****5678."""
    if not value:
        return value
    if len(value) < 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_name(value: str | None) -> str | None:
    """张*明 / 李*: first character kept."""
    if not value:
        return value
    if len(value) == 1:
        return value
    if len(value) == 2:
        return value[0] + "*"
    return value[0] + "*" * (len(value) - 2) + value[-1]


_MASKERS = {"id_number": mask_id_number, "phone": mask_phone, "owner_phone": mask_phone,
            "legal_person_id_number": mask_id_number}


def may_see(role: str, field: str, *, owner: bool = False) -> bool:
    """Whether role sees field in full. ``owner``: the record is a house owner's, so his "phone" is an owner's
    phone (roles.UNMASKED_FIELDS "owner_phone") - the same number is shown alike on his person record and on the
    house he owns."""
    allowed = UNMASKED_FIELDS[Role(role)]
    if owner and field == "phone":
        field = "owner_phone"
    return field in allowed


def mask_value(role: str, field: str, value: str | None, *, owner: bool = False) -> str | None:
    """One value of a masked field (see mask_fields)."""
    if not value or may_see(role, field, owner=owner):
        return value
    return _MASKERS[field](value)


def mask_fields(role: str, record: dict, *, owner: bool = False) -> dict:
    """Return a copy of record with every personal field masked unless the role may see it in full.
    ``owner``: the record is a person who owns a house in the principal's scope (see may_see)."""
    out = dict(record)
    for field, masker in _MASKERS.items():
        if field in out and out[field] and not may_see(role, field, owner=owner):
            out[field] = masker(out[field])
    return out
