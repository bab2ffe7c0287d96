"""The event bus: one interface, an in-process implementation (embedded default) and NATS JetStream (production)."""

from anfang.bus.base import Bus, Handler, Subscription
from anfang.bus.memory import InProcessBus

__all__ = ["Bus", "Handler", "InProcessBus", "Subscription"]
