"""The login throttles' arithmetic (per username, per client address; each attempt counted before
its password is checked), on a clock the test moves; and the client address they key on."""

from __future__ import annotations

import grpc
import pytest

from auth.client_address import client_address, peer_host
from auth.login_throttle import LoginThrottle, LoginThrottles
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


def test_an_attempt_is_counted_before_its_password_is_checked() -> None:
    """The race of concurrent guesses: every attempt is counted when it starts, so with the
    first five still hashing, the sixth is already refused."""
    throttles = LoginThrottles()
    started = [throttles.begin("eve", "198.51.100.7") for _ in range(5)]  # none has finished
    with pytest.raises(ServiceError) as refused:
        throttles.begin("eve", "198.51.100.7")
    assert refused.value.reason == Reason.TOO_MANY_LOGIN_ATTEMPTS and "this user" in refused.value.message
    assert len(started) == 5
    # A refused attempt counts nothing against the address either.
    assert throttles.by_address._failures["198.51.100.7"][0] == 5


def test_a_success_clears_the_username_and_gives_back_only_its_own_address_slot() -> None:
    clock = Clock()
    throttles = LoginThrottles(
        LoginThrottle(free=5, clock=clock), LoginThrottle(free=3, forget_s=60.0, clock=clock, what="x")
    )
    for name in ("a", "b"):
        throttles.begin(name, "addr")  # two failures from the address
    throttles.begin("mine", "addr").succeeded()  # the sprayer's own account
    assert throttles.by_username.wait_s("mine") == 0.0
    throttles.begin("c", "addr")  # the third failure: the address must wait now
    with pytest.raises(ServiceError) as refused:
        throttles.begin("mine", "addr")
    assert refused.value.message.startswith("too many failed logins for x;")
    throttles.begin("mine", "elsewhere").succeeded()  # other addresses are not affected
    clock.now += 60.0  # forgotten after a quiet period
    assert throttles.by_address.wait_s("addr") == 0.0
    throttles.begin("d", "addr")
    assert throttles.by_address.wait_s("addr") == 0.0  # counting started over


def test_spraying_one_password_over_many_usernames_from_one_address_is_throttled() -> None:
    throttles = LoginThrottles()
    for i in range(20):  # the address's free failures, each for a new username
        throttles.begin(f"user{i}", "203.0.113.9")
    with pytest.raises(ServiceError) as refused:
        throttles.begin("user20", "203.0.113.9")
    assert (
        refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "this address" in refused.value.message
    )
    assert throttles.by_username.wait_s("user20") == 0.0  # the username was not counted
    throttles.begin("user20", "192.0.2.1")  # another address may still try


def test_release_gives_back_one_reservation() -> None:
    throttle = LoginThrottle(free=2, clock=Clock())
    throttle.reserve("k")
    throttle.reserve("k")
    with pytest.raises(ServiceError):
        throttle.reserve("k")
    throttle.release("k")
    assert throttle.wait_s("k") == 0.0
    throttle.release("k")
    throttle.release("k")  # nothing left: no negative counts
    assert "k" not in throttle._failures


class Peer:
    def __init__(self, peer: str, *metadata: tuple[str, str]) -> None:
        self._peer, self._metadata = peer, metadata

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_client_address_trusts_the_forwarded_address_only_from_a_local_peer() -> None:
    forwarded = ("x-forwarded-for", "203.0.113.9")
    assert peer_host("ipv4:10.1.2.3:5000") == "10.1.2.3"
    assert peer_host("ipv6:[2001:db8::1]:5000") == "2001:db8::1"
    assert client_address(Peer("ipv4:10.1.2.3:5000")) == "10.1.2.3"
    # A gateway on this host, or in this process, speaks for its HTTP client.
    for peer in ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "local", "unix:/run/app.sock"):
        assert client_address(Peer(peer, forwarded)) == "203.0.113.9", peer
        assert client_address(Peer(peer, ("x-forwarded-for", "x" * 65))) == peer_host(peer)  # too long
    # Anyone else's claim is ignored: a remote caller cannot spread its guesses over addresses.
    assert client_address(Peer("ipv4:10.1.2.3:5000", forwarded)) == "10.1.2.3"
    assert client_address(Peer("ipv6:[2001:db8::1]:5000", forwarded)) == "2001:db8::1"
