"""Project lifecycle (同步设计、同步施工、同步验收), framework-free.

A new or retrofitted community is a *project*. Its security design is submitted to the police, reviewed against the
tier rules (``tiers.py``) — returned with comments and resubmitted as often as needed, then approved — built, run
on trial, and accepted once it ran stably for a month (``acceptance.py``). The states, the actions between them,
who may take each, and the funding sources are data (``lifecycle_<version>.json``, citing the seed).

This module is pure: :func:`transition` decides a step, :func:`design_check` reviews a design against its target
tier, :func:`funding_summary` adds up money by source against what was spent. ``projects.py`` stores them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from anfang.construction.tiers import Item, TierRules, evaluate, load_rules
from anfang.core.errors import Forbidden, ValidationError

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Action:
    code: str
    zh: str
    en: str
    sources: frozenset[str]  # states it may be taken from
    target: str
    roles: frozenset[str]
    comment_required: bool = False
    needs_design_ok: bool = False
    needs_stable_run: bool = False


@dataclass(frozen=True)
class LifecycleRules:
    version: str
    source: str
    states: Mapping[str, Mapping[str, str]]
    actions: Mapping[str, Action]
    kinds: Mapping[str, Mapping[str, str]]
    funding_sources: Mapping[str, Mapping[str, str]]

    def state_label(self, state: str, lang: str = "zh") -> str:
        return self.states.get(state, {}).get("zh" if lang.startswith("zh") else "en", state)

    def source_label(self, source: str | None, lang: str = "zh") -> str:
        if not source:
            return "—"
        return self.funding_sources.get(source, {}).get("zh" if lang.startswith("zh") else "en", source)

    def available(self, state: str, role: str) -> list[Action]:
        """The actions ``role`` may take on a project in ``state`` (gates are checked by :func:`transition`)."""
        return [a for a in self.actions.values() if state in a.sources and role in a.roles]


def parse_lifecycle(d: Mapping[str, Any]) -> LifecycleRules:
    states = d["states"]
    actions = {}
    for code, a in d["actions"].items():
        bad = [s for s in [*a["from"], a["to"]] if s not in states]
        if bad:
            raise ValueError(f"action {code}: unknown state(s) {bad}")
        actions[code] = Action(code, a["zh"], a["en"], frozenset(a["from"]), a["to"], frozenset(a["roles"]),
                               bool(a.get("comment_required")), bool(a.get("needs_design_ok")),
                               bool(a.get("needs_stable_run")))
    return LifecycleRules(str(d["version"]), d.get("source", ""), states, actions, d["kinds"], d["funding_sources"])


@cache
def load_lifecycle(version: str = "2021") -> LifecycleRules:
    return parse_lifecycle(json.loads((HERE / f"lifecycle_{version}.json").read_text(encoding="utf-8")))


# ---- design review -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DesignCheck:
    target: str
    ok: bool  # the design, once built, meets the target tier
    meets: str | None  # the highest tier the design meets
    missing: tuple[Item, ...]  # items of the target tier (and below) the design lacks
    unknown: tuple[tuple[str, str], ...] = ()  # pairs naming no subsystem / place of the rules

    def to_dict(self, rules: TierRules | None = None, lang: str = "zh") -> dict[str, Any]:
        r = rules or load_rules()
        return {"target": self.target, "ok": self.ok, "meets": self.meets,
                "missing": [{"subsystem": i.subsystem, "place": i.place, "label": r.label(i, lang)}
                            for i in self.missing],
                "unknown": [list(u) for u in self.unknown]}


def design_check(items: Iterable[Iterable[str]], target: str, not_applicable: Iterable[str] = (),
                 rules: TierRules | None = None) -> DesignCheck:
    """Review a design: does the planned ``(subsystem, place)`` set meet ``target`` (a tier code) and every tier
    below it? Places the community does not have (``not_applicable``) are not required."""
    rules = rules or load_rules()
    codes = [t.code for t in rules.tiers]
    if target not in codes:
        raise ValidationError(f"未知的建设类型 {target!r} / unknown tier", detail=codes)
    pairs = [tuple(p) for p in items]
    unknown = tuple(sorted({(s, p) for s, p in pairs if s not in rules.subsystems or p not in rules.places}))
    have = {Item(s, p) for s, p in pairs}
    skip = set(not_applicable)
    missing: set[Item] = set()
    for tier in rules.tiers[:codes.index(target) + 1]:
        missing |= {i for i in tier.items if i not in have and i.place not in skip}
    meets = evaluate(pairs, rules, skip).met_code
    return DesignCheck(target, not missing and not unknown, meets, tuple(sorted(missing)), unknown)


# ---- transitions ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    action: str
    from_state: str
    to_state: str
    comment: str


def transition(state: str, action: str, role: str, comment: str = "", *, design_ok: bool | None = None,
               stable_run: bool | None = None, rules: LifecycleRules | None = None) -> Step:
    """Decide one step: raises :class:`Forbidden` when ``role`` may not take ``action``, :class:`ValidationError`
    when the project's state does not allow it, a required comment is missing, the design does not meet its
    target tier (approval) or the system has not yet run stably for a month (acceptance application)."""
    r = rules or load_lifecycle()
    a = r.actions.get(action)
    if a is None:
        raise ValidationError(f"未知操作 {action!r} / unknown action", detail=sorted(r.actions))
    if role not in a.roles:
        raise Forbidden(f"无权执行“{a.zh}” / not allowed to {a.en}")
    if state not in a.sources:
        raise ValidationError(f"项目处于“{r.state_label(state)}”，不能“{a.zh}” / cannot {a.en} in state {state}")
    if a.comment_required and not comment.strip():
        raise ValidationError(f"“{a.zh}”须填写意见 / a comment is required")
    if a.needs_design_ok and not design_ok:
        raise ValidationError("设计方案未达到目标建设类型，不能通过 / the design does not meet its target tier")
    if a.needs_stable_run and not stable_run:
        raise ValidationError("系统稳定运行未满一个月，不能申请验收 / the system has not run stably for a month")
    return Step(action, state, a.target, comment.strip())


# ---- funding -------------------------------------------------------------------------------------------------
@dataclass
class FundingSummary:
    by_source: dict[str, Decimal] = field(default_factory=dict)  # funds per source
    funded: Decimal = Decimal(0)
    spent: Decimal = Decimal(0)
    spent_by_source: dict[str, Decimal] = field(default_factory=dict)  # spend records naming a source
    subsidy: Decimal = Decimal(0)  # 以奖代补 (also in by_source)

    @property
    def balance(self) -> Decimal:
        return self.funded - self.spent

    def to_dict(self, rules: LifecycleRules | None = None, lang: str = "zh") -> dict[str, Any]:
        r = rules or load_lifecycle()
        return {"funded": _yuan(self.funded), "spent": _yuan(self.spent), "balance": _yuan(self.balance),
                "subsidy": _yuan(self.subsidy),
                "by_source": [{"source": k, "label": r.source_label(k, lang), "amount": _yuan(v),
                               "spent": _yuan(self.spent_by_source.get(k, Decimal(0)))}
                              for k, v in sorted(self.by_source.items())]}


def _yuan(v: Decimal) -> str:
    return f"{v:.2f}"


def funding_summary(records: Iterable[tuple[str, str | None, Decimal]], subsidy_source: str = "subsidy") \
        -> FundingSummary:
    """Add up ``(kind, source, amount)`` records: funds per source, spend in total and per named source."""
    out = FundingSummary()
    for kind, source, amount in records:
        amount = Decimal(amount)
        if kind == "fund":
            key = source or "unspecified"
            out.by_source[key] = out.by_source.get(key, Decimal(0)) + amount
            out.funded += amount
            if source == subsidy_source:
                out.subsidy += amount
        elif kind == "spend":
            out.spent += amount
            if source:
                out.spent_by_source[source] = out.spent_by_source.get(source, Decimal(0)) + amount
        else:
            raise ValueError(f"bad funding kind {kind!r}")
    return out


def check_funding(kind: str, source: str | None, amount: Decimal, rules: LifecycleRules | None = None,
                  state: str | None = None) -> None:
    """Validate one funding record before it is stored. A source with ``after_state`` (以奖代补: paid once the
    project is accepted) is refused as a fund before the project reached that state."""
    r = rules or load_lifecycle()
    if kind not in ("fund", "spend"):
        raise ValidationError("类型须为 fund（资金来源）或 spend（支出） / kind must be fund or spend")
    if kind == "fund" and not source:
        raise ValidationError("资金须注明来源 / a fund needs its source", detail=sorted(r.funding_sources))
    if source and source not in r.funding_sources:
        raise ValidationError(f"未知资金来源 {source!r} / unknown source", detail=sorted(r.funding_sources))
    if amount <= 0:
        raise ValidationError("金额须大于 0 / amount must be positive")
    after = r.funding_sources.get(source or "", {}).get("after_state")
    if kind == "fund" and after and state is not None and state != after:
        raise ValidationError(f"“{r.source_label(source)}”须在项目“{r.state_label(after)}”后拨付 / "
                              f"{source} is paid only once the project is {after}")
