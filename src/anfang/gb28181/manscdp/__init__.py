"""MANSCDP (GB/T 28181 Appendix A) XML bodies: parsing with the encodings devices really use, and building."""

from anfang.gb28181.manscdp.xml import (
    Manscdp,
    ManscdpError,
    alarm_fields,
    build,
    catalog_item_xml,
    catalog_items,
    parse_manscdp,
)

__all__ = ["Manscdp", "ManscdpError", "alarm_fields", "build", "catalog_item_xml", "catalog_items",
           "parse_manscdp"]
