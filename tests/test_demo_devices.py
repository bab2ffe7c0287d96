"""The demo's simulated GB/T 28181 devices (issue 15, "Done means"): the demo powers its devices off and on to show
live online/offline changes, but never the camera beside the demo's perimeter alarm — the README tells a new user
to trigger that alarm and watch its linked camera live, which must not answer "设备离线"."""

from __future__ import annotations

import asyncio

from anfang.gb28181.service import DemoDevices
from anfang.gb28181.simulator import SimDevice


class _Sim:
    """Records what the demo does to its devices."""

    def __init__(self, devices: list[SimDevice]) -> None:
        self.devices = devices
        self.off: list[str] = []

    def power_off(self, dev: SimDevice) -> None:
        dev.running = False
        self.off.append(dev.device_id)

    async def power_on(self, dev: SimDevice) -> int:
        dev.running = True
        return 200


def test_the_camera_beside_the_demo_perimeter_alarm_is_never_powered_off() -> None:
    sims = [_Sim([SimDevice(f"3504000000118000000{i}", "pw", [], running=True) for i in range(1, 5)]),
            _Sim([SimDevice("35040000001180000005", "pw", [], running=True)])]
    demo = DemoDevices(server=None, count=5, password="pw", cycle=0.001)
    demo.sims = sims

    async def run() -> None:
        task = asyncio.get_running_loop().create_task(demo._cycle())
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(run())
    off = [d for sim in sims for d in sim.off]
    first = sims[0].devices[0]
    assert len(set(off)) == 4  # every other device went off at some time (the demo's live changes)
    assert first.device_id not in off and first.running  # the perimeter's camera stayed online throughout
