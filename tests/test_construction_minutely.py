"""Figures computed once a minute: the first request computes, later ones within the minute read the copy, a stale
copy is answered while one background thread recomputes it, and a failed refresh keeps the copy."""

from __future__ import annotations

import threading
import time

from anfang.construction import minutely
from anfang.store.engine import Store


def test_computed_once_then_refreshed_in_the_background(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    calls: list[int] = []
    release = threading.Event()

    def compute() -> int:
        calls.append(1)
        if len(calls) > 1:
            release.wait(5)
        return len(calls)

    try:
        v, at = minutely.cached(store, "k", compute)
        assert (v, len(calls)) == (1, 1)
        assert minutely.cached(store, "k", compute) == (1, at)  # within the minute: the copy
        assert minutely.cached(store, "other", lambda: "x")[0] == "x"  # keys apart
        # stale: answered at once from the copy while one thread recomputes; a second request starts none
        assert minutely.cached(store, "k", compute, max_age_s=0) == (1, at)
        assert minutely.cached(store, "k", compute, max_age_s=0) == (1, at)
        release.set()
        for _ in range(100):
            v, at2 = minutely.cached(store, "k", compute)
            if v == 2:
                break
            time.sleep(0.02)
        assert (v, len(calls)) == (2, 2) and at2 > at
        # a failing refresh keeps the copy and is tried again later
        def boom() -> int:
            raise RuntimeError("db down")

        assert minutely.cached(store, "k", boom, max_age_s=0)[0] == 2
        time.sleep(0.1)
        assert minutely.cached(store, "k", lambda: 9, max_age_s=0, background=False)[0] == 9
    finally:
        store.dispose()
