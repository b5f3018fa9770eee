"""The login throttle's arithmetic, on a clock the test moves."""

from __future__ import annotations

import grpc
import pytest

from auth.login_throttle import LoginThrottle
from budrt.errors import Reason, ServiceError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_free_attempts_then_doubling_waits_then_reset() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=3, base_s=2.0, cap_s=5.0, clock=clock)
    for _ in range(3):
        throttle.check("eve")
        throttle.failed("eve")
    with pytest.raises(ServiceError) as refused:
        throttle.check("eve")  # 3 failures: wait 2 s
    assert (
        refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        and refused.value.reason == Reason.TOO_MANY_LOGIN_ATTEMPTS
    )
    assert "2 s" in refused.value.message
    throttle.check("bob")  # other users are not affected
    clock.now += 2.0
    throttle.check("eve")
    throttle.failed("eve")  # 4 failures: 4 s
    assert throttle.wait_s("eve") == 4.0
    throttle.failed("eve")  # 5: 8 s, capped at 5
    assert throttle.wait_s("eve") == 5.0
    clock.now += 5.0
    throttle.check("eve")
    throttle.succeeded("eve")
    assert throttle.wait_s("eve") == 0.0
    for _ in range(3):
        throttle.failed("eve")
    assert throttle.wait_s("eve") == 2.0  # counting starts over


def test_memory_is_bounded() -> None:
    throttle = LoginThrottle(free=1, max_entries=2, clock=Clock())
    for name in ("a", "b", "c"):
        throttle.failed(name)
    assert throttle.wait_s("a") == 0.0  # the oldest entry went first
    assert throttle.wait_s("c") > 0.0
