"""Sensor threshold rules with debounce and recovery — pure domain logic, rules as data.

The thresholds come from the issue / common fire-safety practice: electrical-fire monitors alarm on residual
current above 300 mA (GB 14287.2) and cable temperature above 70 °C; a hydrant's static pressure must stay within
0.1–1.0 MPa (GB 50974); combustible gas detectors give their first alarm at 25 % LEL (GB 15322 allows 3–25 % LEL);
a smoke detector reports an alarm state itself. Every rule can be overridden per device.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class SensorRule:
    code: str  # stable rule id, also the dedup key's prefix
    sensor_type: str  # smoke | electrical | hydrant | gas | perimeter | door ...
    metric: str  # the reading's field
    low: float | None = None  # breach when value < low
    high: float | None = None  # breach when value > high
    debounce: int = 1  # consecutive breaching readings before the warning is raised
    recover: int = 1  # consecutive normal readings before the recovery event
    severity: int = 2  # 1 urgent · 2 important · 3 notice
    title_zh: str = ""
    title_en: str = ""
    notify: frozenset[str] = field(default_factory=lambda: frozenset({"police"}))  # roles that also get it

    def breached(self, value: float) -> bool:
        return (self.low is not None and value < self.low) or (self.high is not None and value > self.high)


FIRE = frozenset({"police", "grid_worker", "property_staff"})

DEFAULT_SENSOR_RULES: tuple[SensorRule, ...] = (
    SensorRule("smoke.alarm", "smoke", "alarm", high=0.5, severity=1, title_zh="烟感报警", title_en="smoke alarm",
               notify=FIRE),
    SensorRule("electrical.residual_current", "electrical", "residual_current_ma", high=300, debounce=2,
               severity=2, title_zh="剩余电流超限", title_en="residual current too high", notify=FIRE),
    SensorRule("electrical.cable_temperature", "electrical", "cable_temperature_c", high=70, debounce=2,
               severity=2, title_zh="线缆温度超限", title_en="cable temperature too high", notify=FIRE),
    SensorRule("hydrant.pressure", "hydrant", "pressure_mpa", low=0.1, high=1.0, debounce=3, severity=3,
               title_zh="消火栓水压异常", title_en="hydrant pressure out of range",
               notify=frozenset({"police", "property_staff"})),
    SensorRule("gas.concentration", "gas", "lel_percent", high=25, debounce=1, severity=1, title_zh="燃气泄漏报警",
               title_en="gas leak", notify=FIRE),
)


@dataclass(frozen=True)
class AccessRule:
    """Access control (门禁): a door event that is itself an alarm — forced open (opened with no valid credential,
    the lock's door-position switch says open) or held open past the door's limit (the controller decides the
    limit and reports ``held_open``). One open warning per door and rule; repeats fold into it."""

    code: str
    event: str  # the door message's ``event``
    severity: int
    title_zh: str
    title_en: str
    notify: frozenset[str] = frozenset({"police", "property_staff"})


DEFAULT_ACCESS_RULES: tuple[AccessRule, ...] = (
    AccessRule("access.forced", "forced", 1, "门禁被强行打开", "door forced open"),
    AccessRule("access.held_open", "held_open", 2, "门禁长时间未关", "door held open"),
)
ACCESS_RULES = {r.event: r for r in DEFAULT_ACCESS_RULES}


@dataclass
class _State:
    breaches: int = 0
    normals: int = 0
    active: bool = False


@dataclass(frozen=True)
class RuleOutcome:
    rule: SensorRule
    action: str  # "raise" | "recover"
    value: float
    device_id: str


class SensorEvaluator:
    """Applies the rules to a stream of readings, per device and rule, with debounce and recovery."""

    def __init__(self, rules: tuple[SensorRule, ...] = DEFAULT_SENSOR_RULES,
                 overrides: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        """``overrides``: device id → rule code → fields to replace (e.g. {"high": 250})."""
        self.rules = rules
        self.overrides = overrides or {}
        self._state: dict[tuple[str, str], _State] = {}

    def rules_for(self, device_id: str, sensor_type: str) -> list[SensorRule]:
        out = []
        for rule in self.rules:
            if rule.sensor_type != sensor_type:
                continue
            changes = self.overrides.get(device_id, {}).get(rule.code)
            out.append(replace(rule, **changes) if changes else rule)
        return out

    def evaluate(self, device_id: str, sensor_type: str, readings: dict[str, Any]) -> list[RuleOutcome]:
        outcomes: list[RuleOutcome] = []
        for rule in self.rules_for(device_id, sensor_type):
            raw = readings.get(rule.metric)
            if raw is None or isinstance(raw, str):
                continue
            value = float(raw)
            st = self._state.setdefault((device_id, rule.code), _State())
            if rule.breached(value):
                st.breaches, st.normals = st.breaches + 1, 0
                if not st.active and st.breaches >= rule.debounce:
                    st.active = True
                    outcomes.append(RuleOutcome(rule, "raise", value, device_id))
            else:
                st.normals, st.breaches = st.normals + 1, 0
                if st.active and st.normals >= rule.recover:
                    st.active = False
                    outcomes.append(RuleOutcome(rule, "recover", value, device_id))
        return outcomes
