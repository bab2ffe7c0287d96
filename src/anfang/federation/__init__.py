"""Tiered platforms (社区 → 县 → 市): transactional outbox, forwarder, ingest API, HTTPS and NATS transports.

See docs/federation.md. ``schema.py`` is the contract of what travels; ``outbox.py`` the store hook that writes the
outbox in the same transaction as the record; ``forwarder.py`` sends it; ``service.py`` applies what a child sent.
"""
