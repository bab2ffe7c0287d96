"""Allowed values of the registry's enumerations, with their Chinese (zh-CN) and English labels."""

from __future__ import annotations

ADDRESS_LEVELS = {"community": ("小区/村", "community"), "building": ("楼栋/门牌", "building"),
                  "unit": ("单元", "unit"), "floor": ("楼层", "floor"), "room": ("房间", "room")}
HOUSE_USES = {"self_occupied": ("自住", "self-occupied"), "rental": ("出租", "rental"),
              "vacant": ("空置", "vacant"), "business": ("经营", "business")}
POPULATION_TYPES = {"registered": ("户籍人口", "registered"), "floating": ("流动人口", "floating"),
                    "overseas": ("境外人员", "overseas")}
RESIDENCE_ROLES = {"owner": ("产权人", "owner"), "family": ("家庭成员", "family"), "tenant": ("租户", "tenant")}
VERIFICATION = {"unverified": ("未核实", "unverified"), "verified": ("已核实", "verified"),
                "disputed": ("有疑问", "disputed")}
# Management categories (人员管理类别) used for labels on persons.
PERSON_LABELS = {"elderly_alone": ("独居老人", "elderly living alone"), "minor": ("未成年人", "minor"),
                 "key_person": ("重点人员", "key person"), "disabled": ("残疾人", "disabled"),
                 "left_behind_child": ("留守儿童", "left-behind child"), "veteran": ("退役军人", "veteran")}
PLATE_COLORS = {"blue": ("蓝", "blue"), "yellow": ("黄", "yellow"), "green": ("绿", "green"),
                "white": ("白", "white"), "black": ("黑", "black")}
GENDERS = {"M": ("男", "male"), "F": ("女", "female")}


def label(vocab: dict[str, tuple[str, str]], key: str | None, lang: str = "zh-CN") -> str:
    if key is None:
        return ""
    pair = vocab.get(key)
    if pair is None:
        return key
    return pair[0] if lang.startswith("zh") else pair[1]
