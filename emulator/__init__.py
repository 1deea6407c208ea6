"""A local stand-in for Anthropic's Messages API, for demos, tests and benchmarks.

    from emulator import Emulator, Knobs

    with Emulator(Knobs(ttft_ms=10, rpm=600)) as emu:
        client = anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="x")
        ...
        emu.stats()["rate_limited"]

`python -m emulator --port 8765` serves it on its own (see __main__.py for the flags).
"""

from .knobs import Knobs
from .server import Emulator

__all__ = ["Emulator", "Knobs"]
