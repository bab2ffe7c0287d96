"""The RFC 3261 subset GB/T 28181 uses: messages, digest auth, transactions over UDP and TCP."""

from anfang.gb28181.sip.message import SipError, SipMessage, parse_message

__all__ = ["SipError", "SipMessage", "parse_message"]
