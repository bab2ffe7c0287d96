"""Figures computed at most once a minute per store and key (the 大屏's and the construction pages' overviews).

A copy older than ``max_age_s`` is still answered while one background thread recomputes it, so only the first
request after start-up waits for the computation; the figures are at most about two ``max_age_s`` old. For figures
that change with installations and edits (channels, buildings covered, tiers, compliance, yesterday's online rate),
not by the second. Each entry records when it was computed: pages show it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from time import monotonic
from typing import Any

from anfang.security.scope import Principal
from anfang.store.engine import Store

log = logging.getLogger(__name__)
REFRESH_S = 60.0


@dataclass
class _Entry:
    at: datetime  # when the value was computed (the figures' "as of")
    taken: float  # monotonic() of that computation
    value: Any
    refreshing: bool = False


_caches: weakref.WeakKeyDictionary[Store, dict[Hashable, _Entry]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def scope_key(p: Principal) -> tuple[Any, ...]:
    """What a principal's scope depends on (two users with the same key see the same figures)."""
    return (p.role, p.county_code, p.community_code, p.police_area_id, p.grid_id, p.person_id)


def _compute(store: Store, key: Hashable, compute: Callable[[], Any]) -> _Entry:
    taken, at = monotonic(), datetime.now(UTC)
    entry = _Entry(at, taken, compute())
    with _lock:
        _caches.setdefault(store, {})[key] = entry
    return entry


def _in_background(store: Store, key: Hashable, compute: Callable[[], Any]) -> None:
    try:
        _compute(store, key, compute)
    except Exception:  # noqa: BLE001 - the stale copy stays; the next request tries again
        log.exception("minutely_refresh_failed", extra={"key": repr(key)})
        with _lock:
            if (old := _caches.get(store, {}).get(key)) is not None:
                old.refreshing = False


def cached(store: Store, key: Hashable, compute: Callable[[], Any], *, max_age_s: float = REFRESH_S,
           background: bool = True) -> tuple[Any, datetime]:
    """``compute()``'s value for ``key`` computed at most once per ``max_age_s``, and when it was computed.
    ``background=False``: a stale copy is recomputed before answering (tests, command line)."""
    with _lock:
        entry = _caches.get(store, {}).get(key)
        stale = entry is not None and monotonic() - entry.taken >= max_age_s
        start = entry is not None and stale and background and not entry.refreshing
        if start:
            entry.refreshing = True  # type: ignore[union-attr]
    if entry is None or (stale and not background):
        entry = _compute(store, key, compute)
    elif start:
        threading.Thread(target=_in_background, args=(store, key, compute), name="minutely", daemon=True).start()
    return entry.value, entry.at
