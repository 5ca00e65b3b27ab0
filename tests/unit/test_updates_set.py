"""The labelled update scenarios (tests/data/updates_scenarios.json) are well formed, and the
`updates` benchmark's matching scores what it should (tools/bench/updates.py)."""

from __future__ import annotations

import json
from collections import Counter

from tools.bench.updates import Checkpoint, UpdatesRun, duplicate_count, match, same_fact, score
from tools.harness.fake_openai.scripted import LearningScript, load_scenarios

SCENARIOS = load_scenarios()
KINDS = {"change", "negation", "both_stay", "near_duplicate", "paraphrase", "unrelated", "someone_else"}


def test_the_set_is_large_enough_and_half_english_half_chinese() -> None:
    langs = Counter(s["lang"] for s in SCENARIOS)
    assert len(SCENARIOS) >= 60 and abs(langs["en"] - langs["zh"]) <= 4 and set(langs) == {"en", "zh"}
    assert len({s["id"] for s in SCENARIOS}) == len(SCENARIOS)
    for lang in ("en", "zh"):
        assert {s["kind"] for s in SCENARIOS if s["lang"] == lang} == KINDS


def test_every_turn_is_unique_and_every_fact_labelled_consistently() -> None:
    says = [t["say"] for s in SCENARIOS for t in s["turns"]]
    assert len(says) == len(set(says))  # the scripted model finds a turn by its text
    labels: dict[str, tuple[str, tuple[str, ...]]] = {}
    for scenario in SCENARIOS:
        for turn in scenario["turns"]:
            for fact in turn["facts"]:
                label = (fact["action"], tuple(fact.get("targets") or ()))
                assert labels.setdefault(fact["text"], label) == label, fact["text"]


def test_the_current_facts_follow_from_the_decisions() -> None:
    """Each turn's `current` is the previous one with the decisions applied: the labels agree."""
    for scenario in SCENARIOS:
        current: list[str] = []
        for turn in scenario["turns"]:
            for fact in turn["facts"]:
                targets = fact.get("targets") or []
                assert all(t in current for t in targets), (scenario["id"], fact)
                assert (fact["action"] in ("SUPERSEDE", "INVALIDATE")) <= bool(targets)
                if fact["action"] in ("SUPERSEDE", "INVALIDATE"):
                    current = [c for c in current if c not in targets]
                if fact["action"] in ("ADD", "SUPERSEDE"):
                    current.append(fact["text"])
            assert sorted(current) == sorted(turn["current"]), scenario["id"]


def test_chinese_facts_stay_chinese_and_someone_else_stays_someone_else() -> None:
    for scenario in SCENARIOS:
        for turn in scenario["turns"]:
            for fact in turn["facts"]:
                has_han = any("\u4e00" <= ch <= "\u9fff" for ch in fact["text"])
                assert has_han == (scenario["lang"] == "zh"), fact["text"]
    facts = {f["text"] for s in SCENARIOS for t in s["turns"] for f in t["facts"]}
    assert "用户的妹妹搬到了上海" in facts and "User's sister moved to Shanghai" in facts


def test_the_script_answers_what_the_labels_say() -> None:
    script = LearningScript(SCENARIOS)
    extract = {
        "messages": [
            {"role": "system", "content": "x"},
            {"role": "user", "content": '{"user_message": "我住在北京。"}'},
        ]
    }
    assert script.extract(extract) == {"facts": ["住在北京"]}
    body = json.dumps(
        {
            "memories": [{"id": "m1", "text": "住在北京"}],
            "facts": [{"fact": 0, "text": "搬到了深圳", "similar": ["m1"]}],
        }
    )
    decide = {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": body}]}
    assert script.decide(decide) == {"decisions": [{"fact": 0, "action": "SUPERSEDE", "ids": ["m1"]}]}


def test_matching_tolerates_a_real_models_wording_but_not_another_fact() -> None:
    assert same_fact("Lives in Berlin", "The user lives in Berlin.")
    assert same_fact("Lives in Berlin", "User moved to Berlin")
    assert not same_fact("Lives in Berlin", "Lives in Paris")
    assert not same_fact("Likes tea", "Likes coffee")
    assert same_fact("搬到了深圳", "用户搬到了深圳")
    assert not same_fact("住在北京", "住在上海")
    assert match(["Likes tea", "Likes coffee"], ["likes coffee", "Likes tea", "Lives in Rome"]) == [(0, 1), (1, 0)]
    assert duplicate_count(["Is vegan", "is vegan.", "Likes tea"]) == 1


def test_precision_recall_and_duplicates_per_language() -> None:
    run = UpdatesRun(
        [
            Checkpoint("a", "en", 1, ["Lives in Berlin"], ["Lives in Berlin", "Lives in Paris"], True),
            Checkpoint("b", "zh", 1, ["喜欢喝茶", "喜欢喝咖啡"], ["喜欢喝茶", "喜欢喝茶。"], True),
        ],
        [10.0, 30.0],
    )
    result = score(run)
    en, zh = result["per_language"]["en"]["final"], result["per_language"]["zh"]["final"]
    assert (en["precision"], en["recall"], en["duplicate_rate"]) == (0.5, 1.0, 0.0)
    assert (zh["precision"], zh["recall"], zh["duplicate_rate"]) == (0.5, 0.5, 0.5)
    assert len(result["misses"]) == 2


def test_the_labelled_current_sets_score_perfectly_against_themselves() -> None:
    for scenario in SCENARIOS:
        for turn in scenario["turns"]:
            current = turn["current"]
            assert duplicate_count(current) == 0 and len(match(current, current)) == len(current), current
