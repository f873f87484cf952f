"""The fault scheduler: the spec grammar, one-shot and seeded probabilistic rules, targets, one-line errors."""
import pytest

from runtime.sandbox.faults import REST_AFTER, REST_BEFORE, Faults, FaultSpecError, parse_spec, rules_from_json


def test_spec_grammar():
    rules = parse_spec("accept_then_drop:0.2, http_5xx_json:0.05,accept_then_slow:next:5@cancel,-1007,"
                       "ws_stall:next3:2@market,429:always:2@any")
    assert [(r.kind, r.target, r.probability, r.remaining, r.value) for r in rules] == [
        ("accept_then_drop", "order", 0.2, 0, 0.0), ("http_5xx_json", "order", 0.05, 0, 0.0),
        ("accept_then_slow", "cancel", None, 1, 5.0), ("status_unknown", "order", None, 1, 0.0),
        ("ws_stall", "market", None, 3, 2.0), ("rate_limit_429", "any", 1.0, 0, 2.0)]
    assert parse_spec("") == []


@pytest.mark.parametrize("spec, words", [
    ("nope", "unknown fault 'nope'"), ("accept_then_drop:2", "between 0 and 1"),
    ("accept_then_drop@nowhere", "use order, cancel, query"), ("ws_drop@order", "market, user, all"),
    ("accept_then_slow:next:abc", "'abc' is not a number"),
])
def test_bad_specs_are_one_line(spec, words):
    with pytest.raises(FaultSpecError) as e:
        parse_spec(spec)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_one_shot_rules_fire_on_matching_requests_only_then_go():
    f = Faults(0, parse_spec("accept_then_drop:next2"))
    assert f.draw(REST_AFTER, "GET", "/api/v3/order", True) is None  # a query is not the order target
    assert f.draw(REST_BEFORE, "POST", "/api/v3/order", True) is None  # not a before-processing kind
    assert f.draw(REST_AFTER, "POST", "/api/v3/order", True).kind == "accept_then_drop"
    assert f.draw(REST_AFTER, "POST", "/api/v3/order", True).fired == 2
    assert f.draw(REST_AFTER, "POST", "/api/v3/order", True) is None and f.table() == []


def test_probabilities_are_drawn_from_the_seed():
    def run(seed):
        f = Faults(seed, parse_spec("http_5xx_json:0.3@any"))
        return [f.draw(REST_BEFORE, "GET", "/api/v3/time", False) is not None for _ in range(200)]

    assert run(7) == run(7) and run(7) != run(8)
    assert 30 < sum(run(7)) < 90


def test_json_rules_and_clear():
    f = Faults(0)
    f.add(rules_from_json([{"fault": "429", "next": True, "retry_after": 2},
                           {"fault": "ws_drop", "probability": 0.5, "target": "user"}]))
    assert [(r["fault"], r["target"], r["arg"]) for r in f.table()] == [("rate_limit_429", "order", 2.0),
                                                                       ("ws_drop", "user", 0.0)]
    assert f.draw_ws("market") is None
    f.clear("ws_drop")
    assert [r["fault"] for r in f.table()] == ["rate_limit_429"]
    f.clear()
    assert f.table() == []
    with pytest.raises(FaultSpecError):
        rules_from_json({"kind": "x"})
