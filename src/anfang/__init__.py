"""anfang — 智慧安防小区 / 居安工程 platform."""

__version__ = "0.1.0"
