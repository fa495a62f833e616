from __future__ import annotations

import pytest

from gateway.auth.rate_limit import RateDecision, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_burst_is_allowed_then_refused_with_time_to_next_token(clock):
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.check("k").allowed for _ in range(3)] == [True, True, True]
    refused = limiter.check("k")
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)
    assert refused.retry_after_header == "1"


def test_tokens_come_back_at_the_configured_rate(clock):
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.check("k")
    clock.advance(0.49)
    assert not limiter.check("k").allowed
    clock.advance(0.01)
    assert limiter.check("k").allowed
    assert not limiter.check("k").allowed


def test_idle_key_refills_only_up_to_the_burst(clock):
    limiter = RateLimiter(rate=1, burst=2, clock=clock)
    limiter.check("k")
    clock.advance(3600)
    assert [limiter.check("k").allowed for _ in range(3)] == [True, True, False]


def test_keys_have_separate_buckets(clock):
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    assert limiter.check("monitor-key").allowed
    assert not limiter.check("monitor-key").allowed
    assert limiter.check("ops-key").allowed


def test_retry_after_covers_a_larger_cost(clock):
    limiter = RateLimiter(rate=0.1, burst=5, clock=clock)
    assert limiter.check("k", cost=5).allowed
    refused = limiter.check("k", cost=2)
    assert refused.retry_after == pytest.approx(20.0)
    assert refused.retry_after_header == "20"


def test_clock_stepping_back_adds_no_tokens(clock):
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    limiter.check("k")
    clock.advance(-100)
    assert not limiter.check("k").allowed
    clock.advance(100.5)
    assert not limiter.check("k").allowed  # only 0.5 s since the last real check
    clock.advance(0.5)
    assert limiter.check("k").allowed


def test_full_buckets_are_forgotten_when_the_table_is_full(clock):
    limiter = RateLimiter(rate=1, burst=1, clock=clock, max_keys=2)
    limiter.check("a")
    limiter.check("b")
    clock.advance(10)
    limiter.check("c")
    assert set(limiter._buckets) == {"c"}


def test_header_is_at_least_one_second():
    assert RateDecision(False, 0.001).retry_after_header == "1"
    assert RateDecision(False, 2.2).retry_after_header == "3"


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_nonsense_limits_are_refused(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate=rate, burst=burst)


@pytest.mark.parametrize("cost", [0, -1, 4])
def test_cost_outside_the_bucket_is_refused(clock, cost):
    with pytest.raises(ValueError, match="cost"):
        RateLimiter(rate=1, burst=3, clock=clock).check("k", cost=cost)
