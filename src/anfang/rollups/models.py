"""The rollup tables. Rows are only ever adjusted by the triggers (anfang.rollups.ddl) and rebuilt by
``anfang rollups rebuild``; a count may reach 0 and its row stays.

Cell keys never hold NULL (a NULL would defeat the upsert's conflict target): a missing police area or grid is 0,
a missing community or county code is ''.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from anfang.store.base import Base

# The day of a capture or warning: the calendar day in Asia/Shanghai (UTC+8 all year, no daylight saving since 1991),
# the day the console shows.
DAY_OFFSET_HOURS = 8


def rollup_day(at: datetime) -> str:
    """The rollups' day (YYYY-MM-DD, Beijing time) of an instant."""
    return (at.astimezone(UTC) + timedelta(hours=DAY_OFFSET_HOURS)).date().isoformat()


class RegistryRollup(Base):
    """The seed's 一标三实 counts (metrics.Counts) per jurisdiction cell: county, community, 警务区, grid."""

    __tablename__ = "rollup_registry"
    county_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    community_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    police_area_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grid_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    addresses: Mapped[int] = mapped_column(Integer, default=0)
    plate_installed: Mapped[int] = mapped_column(Integer, default=0)
    plate_accurate: Mapped[int] = mapped_column(Integer, default=0)
    plate_labelled: Mapped[int] = mapped_column(Integer, default=0)
    persons: Mapped[int] = mapped_column(Integer, default=0)
    persons_verified: Mapped[int] = mapped_column(Integer, default=0)
    houses: Mapped[int] = mapped_column(Integer, default=0)
    houses_verified: Mapped[int] = mapped_column(Integer, default=0)
    units: Mapped[int] = mapped_column(Integer, default=0)
    units_verified: Mapped[int] = mapped_column(Integer, default=0)


class DeviceRollup(Base):
    """Devices per county, community, protocol and status (online | offline | unknown). An unplaced device (no
    community) counts in the county its 20-digit id names, as devices.placement.county_condition has it."""

    __tablename__ = "rollup_devices"
    county_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    community_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    protocol: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class CaptureRollup(Base):
    """GA/T 1400 objects (viid_objects) per day (Asia/Shanghai, of shot_at), camera (device_id) and community."""

    __tablename__ = "rollup_captures"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    community_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class WarningRollup(Base):
    """Warnings per state, category and jurisdiction cell."""

    __tablename__ = "rollup_warnings"
    county_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    community_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    police_area_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grid_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    category: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class WarningDayRollup(Base):
    """Warnings raised per day (Asia/Shanghai, of created_at), county and community."""

    __tablename__ = "rollup_warnings_daily"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    county_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    community_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)
