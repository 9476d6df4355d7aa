"""The fault tests' TCP proxy as a fixture (the proxy itself: :mod:`devtools.faultproxy`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.faultproxy import FaultProxy, fault_proxy

__all__ = ["FaultProxy", "fault_proxy", "proxy_factory"]


@pytest.fixture
def proxy_factory() -> Iterator[object]:
    """``proxy_factory(host, port)`` → a started :class:`FaultProxy`, stopped after the test."""
    made: list[FaultProxy] = []

    def make(host: str, port: int) -> FaultProxy:
        proxy = FaultProxy(host, port).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()
