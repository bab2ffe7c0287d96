"""Indexes added for the console's reads at city scale (issue 20, benchmarks/bench_pages.py), declared here beside
the tables' own modules so that metadata and migration 0019c agree.

- ``viid_objects (shot_at, id)``: the capture browser lists the newest captures first (``ORDER BY shot_at DESC, id
  DESC``); without it every page view sorted the whole table (1.4 s at 1.2 M captures on SQLite).
- ``viid_objects (community_code, kind, shot_at)``: a county administrator's or an officer's captures (their
  communities, of one kind or all), and the capped count of them, read only their index entries.
"""

from __future__ import annotations

from sqlalchemy import Index

from anfang.viid.models import ViidObject

Index("ix_viid_objects_shot_id", ViidObject.shot_at, ViidObject.id)
Index("ix_viid_objects_community_kind_shot", ViidObject.community_code, ViidObject.kind, ViidObject.shot_at)
