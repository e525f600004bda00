"""Promotion rules and summaries of the flywheel loop, on hand-made A/B read-outs."""

from characterflywheel.flywheel import flat_numbers, lift, promotion_decision


def ab(breadth: tuple[float, float, float, float], depth: tuple[float, float, float, float], verdict: str) -> dict:
    def entry(values):
        control, challenger, lo, hi = values
        return {"control": control, "challenger": challenger, "lift": challenger / control - 1, "ci_lo": lo, "ci_hi": hi}

    return {"arms": {"challenger": {"users": 40}},
            "challengers": {"challenger": {"breadth": entry(breadth), "depth": entry(depth), "verdict": verdict,
                                           "reasons": ["because"], "guardrails": []}}}


def test_point_rule_promotes_when_engagement_rises_and_nothing_drops():
    ok, reason = promotion_decision(ab((0.2, 0.25, -0.1, 0.4), (2.0, 2.2, -0.05, 0.3), "inconclusive"), "point")
    assert ok and "breadth +0.050" in reason


def test_point_rule_refuses_a_drop_in_either_metric():
    assert not promotion_decision(ab((0.2, 0.25, -0.1, 0.4), (2.0, 1.9, -0.2, 0.1), "inconclusive"), "point")[0]


def test_no_ship_verdict_always_blocks():
    ok, reason = promotion_decision(ab((0.2, 0.3, 0.1, 0.6), (2.0, 2.5, 0.1, 0.4), "no-ship"), "point")
    assert not ok and "no-ship" in reason


def test_ci_rule_needs_a_ship_verdict():
    assert not promotion_decision(ab((0.2, 0.25, -0.1, 0.4), (2.0, 2.2, -0.05, 0.3), "inconclusive"), "ci")[0]
    assert promotion_decision(ab((0.2, 0.3, 0.1, 0.6), (2.0, 2.5, 0.1, 0.4), "ship"), "ci")[0]


def test_flat_numbers_keeps_numbers_and_booleans_only():
    flat = flat_numbers({"a": {"b": 1, "c": "x", "d": True, "e": float("nan")}, "f": 2.5})
    assert flat == {"a.b": 1.0, "a.d": 1.0, "f": 2.5}


def test_lift_reports_the_estimate_the_verdict_reads():
    read_out = ab((0.2, 0.25, -0.1, 0.6), (2.0, 2.2, -0.05, 0.3), "inconclusive")
    depth = read_out["challengers"]["challenger"]["depth"]
    assert lift(read_out, "depth")["lo"] == -0.05 and lift(read_out, "depth")["estimate"] is None
    depth |= {"primary": "cuped", "mde": 0.4,
              "cuped": {"lift": 0.09, "ci_lo": -0.02, "ci_hi": 0.2, "boot_ci_lo": -0.03, "boot_ci_hi": 0.21}}
    shown = lift(read_out, "depth")
    assert (shown["value"], shown["lo"], shown["hi"], shown["boot_lo"]) == (0.09, -0.02, 0.2, -0.03)
    assert shown["estimate"] == "cuped" and shown["mde"] == 0.4 and shown["control"] == 2.0 and shown["n"] == 40
