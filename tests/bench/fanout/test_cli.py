"""bench/fanout/cli.py: the flags, the names asked for, and the plan of one round."""

from __future__ import annotations

import pytest

from bench.fanout.cli import choose, parse_args, plan


def test_quick_is_small_and_one_round() -> None:
    args = parse_args(["--quick"])
    assert (args.subscribers, args.channels, args.duration, args.rounds) == (2000, 200, 5.0, 1)
    assert parse_args([]).rounds == 3


def test_names_are_checked_and_scenarios_keep_their_order() -> None:
    args = parse_args(["--hubs", "nchan,relay", "--scenarios", "stall,f1"])
    assert choose(args) == (["nchan", "relay"], ["F1", "F-stall"])
    with pytest.raises(SystemExit, match="unknown"):
        choose(parse_args(["--hubs", "relay,caddy"]))


def test_the_plan_runs_f_stall_on_the_relay_and_f2_without_relay_redis() -> None:
    args = parse_args(["--subscribers", "50", "--channels", "5", "--per-channel", "3"])
    runs = plan(args, ["relay", "relay-redis"], ["F1", "F2", "F-stall"])
    assert [(hub, scenario) for hub, scenario, _ in runs] == [
        ("relay", "F1"), ("relay", "F2"), ("relay", "F-stall"), ("relay-redis", "F1")]
    assert runs[0][2].per_channel == 50 and runs[1][2].channels == 5
