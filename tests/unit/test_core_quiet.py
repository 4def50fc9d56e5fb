"""Quiet hours in the lead's time zone (stream/core/quiet.py, issue 12).

Table rows are named after the rule they show; times are written in UTC and the comment gives
the local wall time. Two zones and both autumn daylight-saving changes of 2026 are covered
(Europe/Berlin 2026-10-25 03:00 CEST -> 02:00 CET; America/New_York 2026-11-01 02:00 EDT ->
01:00 EST), plus a spring-forward gap and weekends.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.config import QuietHoursRules, load_config, load_config_text
from stream.core.context import Ctx
from stream.core.emails import send_email
from stream.core.engine import step
from stream.core.model import Event, rfc3339_to_ms
from stream.core.quiet import deliver_after, is_quiet, local_time, zone
from stream.core.state import LeadState
from topics.parse import InvalidEvent, parse_event

DEFAULT = QuietHoursRules(enabled=True)  # 21:00-08:00, weekends allowed, default zone UTC
WEEKENDS = QuietHoursRules(enabled=True, weekends=True)
EARLY_END = QuietHoursRules(enabled=True, start="21:00", end="02:30")
ON = "quiet_hours: {enabled: true}\n"


def ms(text: str) -> int:
    return rfc3339_to_ms(text)


# (rule, zone, decided at (UTC), rules, expected deliver_after (UTC) or None)
ROWS = [
    ("allowed_daytime_sends_at_once", "Europe/Berlin", "2026-10-21T10:00:00Z", DEFAULT, None),
    # 21:00 CEST is the first quiet minute
    (
        "start_of_quiet_hours_is_quiet",
        "Europe/Berlin",
        "2026-10-21T19:00:00Z",
        DEFAULT,
        "2026-10-22T06:00:00Z",
    ),
    # 20:59:59.999 CEST is still allowed
    (
        "last_instant_before_start_is_allowed",
        "Europe/Berlin",
        "2026-10-21T18:59:59.999Z",
        DEFAULT,
        None,
    ),
    # 07:59:59.999 CEST is quiet: held one millisecond, to 08:00 CEST
    (
        "last_quiet_instant_waits_for_end",
        "Europe/Berlin",
        "2026-10-22T05:59:59.999Z",
        DEFAULT,
        "2026-10-22T06:00:00Z",
    ),
    ("end_of_quiet_hours_is_allowed", "Europe/Berlin", "2026-10-22T06:00:00Z", DEFAULT, None),
    # 22:00 CEST on 24 Oct; 08:00 on 25 Oct is CET (+01:00) after the change at 03:00
    (
        "berlin_dst_end_next_morning_is_cet",
        "Europe/Berlin",
        "2026-10-24T20:00:00Z",
        DEFAULT,
        "2026-10-25T07:00:00Z",
    ),
    # 02:30 CET on 25 Oct (after the repeated hour): same morning 08:00 CET
    (
        "berlin_dst_end_after_the_repeated_hour",
        "Europe/Berlin",
        "2026-10-25T01:30:00Z",
        DEFAULT,
        "2026-10-25T07:00:00Z",
    ),
    # 23:30 EDT on 31 Oct; 08:00 on 1 Nov is EST (-05:00)
    (
        "new_york_dst_end_next_morning_is_est",
        "America/New_York",
        "2026-11-01T03:30:00Z",
        DEFAULT,
        "2026-11-01T13:00:00Z",
    ),
    # 01:30 EDT (first pass) and 01:30 EST (second pass) on 1 Nov: both wait for 08:00 EST
    (
        "new_york_repeated_hour_first_pass",
        "America/New_York",
        "2026-11-01T05:30:00Z",
        DEFAULT,
        "2026-11-01T13:00:00Z",
    ),
    (
        "new_york_repeated_hour_second_pass",
        "America/New_York",
        "2026-11-01T06:30:00Z",
        DEFAULT,
        "2026-11-01T13:00:00Z",
    ),
    # the same instant is 09:30 in Berlin (allowed) and 04:30 in New York (quiet)
    ("same_instant_allowed_in_berlin", "Europe/Berlin", "2026-11-02T08:30:00Z", DEFAULT, None),
    (
        "same_instant_quiet_in_new_york",
        "America/New_York",
        "2026-11-02T09:30:00Z",
        DEFAULT,
        "2026-11-02T13:00:00Z",
    ),
    # spring forward: 02:30 does not exist in New York on 2026-03-08 (02:00 EST -> 03:00 EDT);
    # an end time inside the gap resolves to 03:30 EDT, after the jump
    (
        "end_inside_spring_forward_gap_resolves_after_the_jump",
        "America/New_York",
        "2026-03-08T04:00:00Z",
        EARLY_END,
        "2026-03-08T07:30:00Z",
    ),
    # weekends on: Friday 22:00 CEST waits for Monday 08:00 CET (DST ended on Sunday)
    (
        "weekend_friday_night_waits_for_monday",
        "Europe/Berlin",
        "2026-10-23T20:00:00Z",
        WEEKENDS,
        "2026-10-26T07:00:00Z",
    ),
    # weekends on: Saturday noon is quiet; weekends off: it is not
    (
        "weekend_saturday_noon_is_quiet",
        "Europe/Berlin",
        "2026-10-24T10:00:00Z",
        WEEKENDS,
        "2026-10-26T07:00:00Z",
    ),
    (
        "weekend_off_saturday_noon_is_allowed",
        "Europe/Berlin",
        "2026-10-24T10:00:00Z",
        DEFAULT,
        None,
    ),
    # no zone on the lead: the configured default (UTC): 23:00 UTC waits for 08:00 UTC
    ("no_zone_uses_the_default", None, "2026-10-21T23:00:00Z", DEFAULT, "2026-10-22T08:00:00Z"),
    (
        "disabled_never_holds",
        "Europe/Berlin",
        "2026-10-21T23:00:00Z",
        QuietHoursRules(enabled=False),
        None,
    ),
]


@pytest.mark.parametrize(
    ("zone_name", "decided", "rules", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
def test_quiet_hours_table(
    zone_name: str | None, decided: str, rules: QuietHoursRules, expected: str | None
) -> None:
    got = deliver_after(ms(decided), zone_name, rules)
    assert got == (None if expected is None else ms(expected))
    if got is not None:  # the answer itself is allowed, and later than the decision
        tz = zone(zone_name or rules.default_timezone)
        assert tz is not None
        assert got > ms(decided) and not is_quiet(local_time(got, tz), rules)


def test_config_rejects_bad_quiet_hours_naming_the_field() -> None:
    from stream.core.config import ConfigError

    for bad, field in (
        ("quiet_hours: {start: '25:00'}", "quiet_hours.start"),
        ("quiet_hours: {default_timezone: Mars/Olympus}", "quiet_hours.default_timezone"),
        ("quiet_hours: {start: '08:00', end: '08:00'}", "quiet_hours"),
    ):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config_text(f"version: t\n{bad}\n")


def test_unknown_timezone_is_a_dead_letter_at_the_boundary() -> None:
    raw = (
        b'{"event_id":"e1","type":"lead.created","lead_id":"L1",'
        b'"occurred_at":"2026-10-21T10:00:00Z","properties":{"timezone":"Mars/Olympus"}}'
    )
    with pytest.raises(InvalidEvent) as err:
        parse_event(raw)
    assert err.value.reason == "bad_properties:lead.created"
    ok = parse_event(raw.replace(b"Mars/Olympus", b"Europe/Berlin"))
    assert ok.properties["timezone"] == "Europe/Berlin"


def test_engine_stamps_the_send_and_the_record() -> None:
    """trial.started at 23:00 Berlin: the welcome email carries deliver_after = 08:00 Berlin."""
    cfg = load_config_text(f"version: t\n{ON}")
    assert load_config().quiet_hours == cfg.quiet_hours  # shipped on, 21:00-08:00 (issue 12)
    created = Event(
        "e1",
        "lead.created",
        "L1",
        ms("2026-10-21T08:00:00Z"),
        None,
        {"company_size": 200, "industry": "saas", "timezone": "Europe/Berlin"},
    )
    state = step(None, created, cfg).state
    assert state.timezone == "Europe/Berlin"
    r = step(state, Event("e2", "trial.started", "L1", ms("2026-10-21T21:00:00Z")), cfg)
    sends = [a for a in r.actions if a.type == "send" and a.channel == "email"]
    assert sends and all(a.deliver_after == ms("2026-10-22T06:00:00Z") for a in sends)
    assert sends[0].to_record()["deliver_after"] == "2026-10-22T06:00:00Z"
    assert r.state.send_times == (ms("2026-10-22T06:00:00Z"),)  # the cap counts delivery
    day = step(state, Event("e3", "trial.started", "L1", ms("2026-10-21T09:00:00Z")), cfg)
    assert [a for a in day.actions if a.type == "send"]
    assert all("deliver_after" not in a.to_record() for a in day.actions)


def test_frequency_cap_counts_the_delivery_time() -> None:
    """Cap 1 per 9.6 h. A send at 20:59 UTC goes at once; one decided at 21:30 is held to 08:00
    the next day, 11 h later, so it is allowed (by decision time it would be capped); a third
    decided at 22:00 would also be delivered at 08:00: capped."""
    cfg = load_config_text(
        "version: t\nemails: {frequency_cap: 1, frequency_window_days: 0.4, holdout_pct: 0}\n" + ON
    )
    d = LeadState("L1")
    outcomes = []
    for n, when in enumerate(
        ("2026-10-21T20:59:00Z", "2026-10-21T21:30:00Z", "2026-10-21T22:00:00Z")
    ):
        ctx = Ctx(d, cfg, f"e{n}", ms(when), ms(when))
        send_email(ctx, "t.x", "test")
        outcomes.append((ctx.actions[0].type, ctx.actions[0].deliver_after))
    assert outcomes == [
        ("send", None),
        ("send", ms("2026-10-22T08:00:00Z")),
        ("skipped", None),
    ]
    assert d.send_times == (ms("2026-10-22T08:00:00Z"),)


def _reference_deliver_after(at_ms: int, zone_name: str, rules: QuietHoursRules) -> int | None:
    """The rule written out instant by instant (no per-day cache): the end of quiet hours on
    the decision's local day or one of the next eight, the first that is later and allowed."""
    from datetime import UTC, datetime, timedelta

    tz = zone(zone_name)
    assert tz is not None
    local = local_time(at_ms, tz)
    if not is_quiet(local, rules):
        return None
    for k in range(9):
        wall = datetime.combine(local.date() + timedelta(days=k), rules.end_time, tzinfo=tz)
        end = (wall - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        if end > at_ms and not is_quiet(local_time(end, tz), rules):
            return end
    raise AssertionError("no allowed time")


ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")


@settings(max_examples=300, deadline=None)
@given(
    at=st.integers(min_value=ms("2026-01-01T00:00:00Z"), max_value=ms("2027-12-31T00:00:00Z")),
    zone_name=st.sampled_from(ZONES),
    rules=st.sampled_from((DEFAULT, WEEKENDS, EARLY_END)),
)
def test_held_sends_wait_for_the_first_allowed_end_of_quiet_hours(
    at: int, zone_name: str, rules: QuietHoursRules
) -> None:
    """deliver_after (its allowed ends cached per local day and zone) equals the rule computed
    instant by instant, across daylight-saving changes, half-hour zones and weekends."""
    assert deliver_after(at, zone_name, rules) == _reference_deliver_after(at, zone_name, rules)
    # the same day's cached ends serve a later decision of that day too
    later = at + 3_600_000
    assert deliver_after(later, zone_name, rules) == _reference_deliver_after(
        later, zone_name, rules
    )
