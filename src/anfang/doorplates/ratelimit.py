"""Per-client token buckets for the public plate pages.

Hand-written (≈30 lines) rather than the `limits` package: we need one in-process bucket per (rule, client) with
a bounded memory footprint and nothing else — no storage backends, no string rate grammar, no new dependency.
Limits are per process; a node behind several workers gets N times the budget, which is acceptable for abuse
damping (the aim is to stop scripted enumeration and flooding, not to meter).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    capacity: float  # burst
    per_second: float  # refill rate


# Scanning a plate is cheap and frequent; writing (declarations, tip-offs) is rare for a real resident.
RULES: dict[str, Rule] = {
    "scan": Rule(capacity=30, per_second=30 / 60),
    "write": Rule(capacity=5, per_second=5 / 600),
    "door": Rule(capacity=60, per_second=1),
}


class RateLimiter:
    def __init__(self, rules: dict[str, Rule] | None = None, max_clients: int = 50_000) -> None:
        self.rules = dict(rules or RULES)
        self.max_clients = max_clients
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, rule: str, client: str | None, now: float | None = None) -> bool:
        """Take one token from the (rule, client) bucket; False when it is empty."""
        r = self.rules[rule]
        key = (rule, client or "?")
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (r.capacity, now))
            tokens = min(r.capacity, tokens + (now - last) * r.per_second)
            ok = tokens >= 1
            self._buckets[key] = (tokens - 1 if ok else tokens, now)
            while len(self._buckets) > self.max_clients:  # forget the least recently seen clients
                self._buckets.popitem(last=False)
        return ok
