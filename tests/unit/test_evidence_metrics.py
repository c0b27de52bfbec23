"""The evidence benchmark's pure parts: metrics on hand-made cases, the shared budget rule, the
split, the bootstrap CI, HotpotQA-long construction and the L-Eval selection (no model needed:
a whitespace tokenizer stands in where only token counts matter)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infiniretri_integrations.core.scoring import fill_budget
from infiniretri_integrations.evaluation.evidence import (
    EvidenceBench,
    bootstrap_ci,
    configure_parser,
    covered_fraction,
    evidence_metrics,
    in_document_order,
    kept_text,
    locate_pieces,
    merge_spans,
    paired_differences,
    parse_variant,
    rank_by_scores,
    reference_kept_text,
    run_benchmark,
    summarize,
)
from infiniretri_integrations.evaluation.evidence_data import (
    EvidenceSample,
    HotpotRecord,
    build_hotpot_long,
    format_passage,
    hotpot_pool,
    leval_samples,
    split_halves,
    split_order,
)


def words(text: Any, **_: Any) -> dict[str, Any]:
    """A tokenizer counting whitespace-separated words (enough for token budgets)."""
    if isinstance(text, list):
        return {"input_ids": [list(range(len(t.split()))) for t in text]}
    return {"input_ids": list(range(len(text.split())))}


# --------------------------------------------------------------------------------- metrics
def hand_made() -> EvidenceSample:
    first = "Alpha was born in Oslo."
    second = "Beta is a river in Peru."
    text = f"Passage 1:\nA\nNoise here. {first} More noise.\n\nPassage 2:\nB\n{second} End."
    s1 = text.index(first)
    s2 = text.index(second)
    return EvidenceSample(
        dataset="hotpotqa-long",
        id="q",
        question="Where?",
        answers=("Oslo",),
        text=text,
        half="test",
        target_tokens=8000,
        supporting=((s1, s1 + len(first), 0), (s2, s2 + len(second), 1)),
        gold_passages=((0, 1), (2, 3)),
    )


def test_merge_and_coverage() -> None:
    assert merge_spans([(5, 8), (0, 2), (2, 3), (7, 10), (12, 12)]) == [(0, 3), (5, 10)]
    assert covered_fraction((10, 20), [(0, 12), (15, 30)]) == pytest.approx(0.7)
    assert covered_fraction((10, 20), []) == 0.0
    assert covered_fraction((5, 5), [(0, 10)]) == 0.0


def test_metrics_hand_made_case() -> None:
    sample = hand_made()
    (a1, b1, _), (a2, b2, _) = sample.supporting
    nothing = evidence_metrics(sample, [])
    assert nothing == {"supporting_recall": 0.0, "both_paragraphs": 0.0, "answer_recall": 0.0}
    first_only = evidence_metrics(sample, [(a1, b1)])
    assert first_only["supporting_recall"] == 0.5
    assert first_only["both_paragraphs"] == 0.0
    assert first_only["answer_recall"] == 1.0  # "Oslo" is in the first supporting sentence
    both = evidence_metrics(sample, [(a2, b2), (a1, b1)])
    assert both == {"supporting_recall": 1.0, "both_paragraphs": 1.0, "answer_recall": 1.0}


def test_coverage_threshold_is_half_of_the_characters() -> None:
    sample = hand_made()
    (a1, b1, _), (a2, b2, _) = sample.supporting
    length = b2 - a2
    half = a2 + (length + 1) // 2  # at least 50% of the second sentence's characters
    just_under = a2 + (length // 2) - 1
    assert evidence_metrics(sample, [(a1, b1), (a2, half)])["both_paragraphs"] == 1.0
    assert evidence_metrics(sample, [(a1, b1), (a2, just_under)])["both_paragraphs"] == 0.0
    assert evidence_metrics(sample, [(a1, b1), (a2, just_under)])["supporting_recall"] == 0.5


def test_answer_recall_whole_words_and_yes_no_excluded() -> None:
    sample = hand_made()
    text = sample.text
    noise = text.index("Noise")
    assert evidence_metrics(sample, [(noise, noise + 11)])["answer_recall"] == 0.0
    yes_no = EvidenceSample(**{**sample.__dict__, "answers": ("yes",)})
    assert evidence_metrics(yes_no, [(0, len(text))])["answer_recall"] is None
    year = EvidenceSample(**{**sample.__dict__, "answers": ("10",), "text": "Born in 2010. Aged 10 now."})
    assert evidence_metrics(year, [(0, 13)])["answer_recall"] == 0.0
    assert evidence_metrics(year, [(13, 26)])["answer_recall"] == 1.0


def test_kept_text_in_document_order() -> None:
    text = "One. Two. Three. Four."
    assert kept_text(text, [(16, 22), (0, 4)]) == "One.\n\nFour."


# --------------------------------------------------------------------------------- budget rule
def test_fill_budget_respects_the_exact_budget_and_returns_document_order() -> None:
    # the package's one budget rule (core.scoring.fill_budget), which every method uses: units by score
    sizes = [4, 3, 5, 1, 2]
    chosen = fill_budget([0.8, 0.6, 0.9, 0.4, 0.2], sizes, 8)  # order 2, 0, 1, 3, 4
    assert chosen == [1, 2]  # 5 taken, 4 skipped (would be 9), 3 fills to exactly 8, then nothing fits
    assert sum(sizes[i] for i in chosen) == 8
    assert fill_budget([0.9, 0.3, 0.8, 0.1, 0.7], sizes, 7) == [0, 3, 4]  # skips 2 and 1, keeps filling after them
    assert fill_budget([0.1, 0.9], [10, 20], 5) == []
    scores = [0.1, 0.9, 0.5, 0.7, 0.3]
    for budget in range(1, 16):
        kept = fill_budget(scores, sizes, budget)
        assert sum(sizes[i] for i in kept) <= budget
        assert kept == sorted(kept)
        # greedy in rank order: a skipped unit did not fit beside the better-ranked units kept
        rank = rank_by_scores(scores)
        for skipped in set(range(len(sizes))) - set(kept):
            better = [i for i in kept if rank.index(i) < rank.index(skipped)]
            assert sum(sizes[i] for i in better) + sizes[skipped] > budget


def test_in_document_order_fills_the_budget_front_to_back_over_the_given_units() -> None:
    sizes = [4, 9, 5, 2, 1]
    assert in_document_order([0, 2, 3, 4], sizes, 8) == [0, 3, 4]  # 2 would make 9: skipped, later ones fit
    assert in_document_order([1], sizes, 8) == []
    assert in_document_order([], sizes, 8) == []
    assert in_document_order([2, 4], sizes, 100) == [2, 4]


def test_run_benchmark_refuses_a_budget_that_is_not_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"budgets must be positive numbers of tokens, got \[0, -5\]"):
        run_benchmark(EvidenceBench(None), [], [("bm25_sentences", {})], [256, 0, -5], tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_rank_by_scores_ties_keep_document_order() -> None:
    assert rank_by_scores([0.5, 0.9, 0.5, 0.1]) == [1, 0, 2, 3]


# --------------------------------------------------------------------------------- split
def test_split_disjoint_balanced_stable_and_seeded() -> None:
    ids = [f"q{i}" for i in range(101)]
    halves = split_halves(ids, seed=0)
    calibration = {i for i, h in halves.items() if h == "calibration"}
    test = {i for i, h in halves.items() if h == "test"}
    assert calibration.isdisjoint(test)
    assert calibration | test == set(ids)
    assert (len(calibration), len(test)) == (51, 50)
    assert split_halves(list(reversed(ids)), seed=0) == halves  # input order does not matter
    assert split_halves(ids, seed=0) == halves  # stable under reruns
    assert split_halves(ids, seed=1) != halves
    order = split_order(ids, 0)
    assert [halves[i] for i in order[:4]] == ["calibration", "test", "calibration", "test"]


# --------------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_on_known_samples() -> None:
    assert bootstrap_ci([0.7] * 10) == (0.7, 0.7)
    values = [1.0] * 50 + [0.0] * 50
    low, high = bootstrap_ci(values, resamples=2000, seed=0)
    # the mean's standard error is 0.05: a 95% interval is about 0.5 +- 0.098
    assert 0.38 < low < 0.43 and 0.57 < high < 0.62
    assert bootstrap_ci(values, seed=0) == (low, high)
    spread = [(i * 37 % 101) / 101 for i in range(40)]
    assert bootstrap_ci(spread, seed=0) == bootstrap_ci(spread, seed=0)
    assert bootstrap_ci(spread, seed=0) != bootstrap_ci(spread, seed=1)
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_ci([])


def test_summary_reports_means_and_cis_of_the_chosen_half() -> None:
    records = [
        {
            "setting": "hotpotqa-long 8K",
            "method": "bm25_sentences",
            "budget": 256,
            "half": half,
            "kept_tokens": 250,
            "input_tokens": 8000,
            "supporting_recall": value,
            "both_paragraphs": value,
            "answer_recall": None,
        }
        for half, value in [("test", 1.0), ("test", 0.0), ("calibration", 1.0)]
    ]
    (row,) = summarize({"records": records}, "test", resamples=200)
    assert row["n"] == 2
    assert row["supporting_recall"]["mean"] == 0.5
    assert row["answer_recall"] is None and row["f1"] is None
    assert summarize({"records": records}, "calibration")[0]["supporting_recall"]["mean"] == 1.0


def test_paired_differences_use_shared_questions_only() -> None:
    def rec(method: str, sample_id: str, value: float, half: str = "test") -> dict[str, Any]:
        return {
            "setting": "leval",
            "method": method,
            "budget": 512,
            "half": half,
            "id": sample_id,
            "answer_recall": value,
        }

    records = [rec("bm25_sentences", i, v) for i, v in [("a", 1.0), ("b", 0.0), ("c", 0.0), ("d", 1.0)]]
    records += [rec("infiniretri", i, v) for i, v in [("a", 1.0), ("b", 1.0), ("c", 1.0)]]
    records += [rec("infiniretri", "e", 0.0, half="calibration")]
    (row,) = paired_differences({"records": records}, "bm25_sentences", "test", resamples=500)
    assert (row["method"], row["budget"], row["n"]) == ("infiniretri", 512, 3)  # "d" unpaired, "e" other half
    assert row["difference"] == pytest.approx(2 / 3)
    assert row["ci"][0] <= 2 / 3 <= row["ci"][1] and row["ci"][1] <= 1.0


# --------------------------------------------------------------------------------- HotpotQA-long
def record(index: int) -> HotpotRecord:
    return HotpotRecord(
        id=f"r{index}",
        question=f"Question {index}?",
        answer=f"answer{index}",
        gold=(
            (f"Gold A{index}", (f"First of A{index}.", f" Fact A{index} is here.", " Last.")),
            (f"Gold B{index}", (f" Fact B{index} leads.", f" Then B{index}.")),
        ),
        supporting=((1,), (0,)),
        distractors=tuple((f"Dis {index}-{k}", (f"Distractor {index} {k} text.",)) for k in range(8)),
    )


def test_hotpot_long_construction() -> None:
    records = [record(i) for i in range(12)]
    pool = hotpot_pool(records)
    sample = build_hotpot_long(records[0], pool, words, 150, seed=0, half="test")
    text = sample.text
    # passage format: "Passage {n}:\n{title}\n{text}" joined by blank lines, numbered in order
    passages = text.split("\n\n")
    assert all(re.fullmatch(r"Passage \d+:\n[^\n]+\n[^\n]+", p) for p in passages)
    assert [int(p.split(":")[0].split()[1]) for p in passages] == list(range(1, len(passages) + 1))
    gold = format_passage(sample.metadata["gold_passage_numbers"][0], "Gold A0", "First of A0. Fact A0 is here. Last.")
    assert gold in passages
    # gold spans point at the supporting sentences and the gold paragraphs
    assert [text[s:e] for s, e, _ in sample.supporting] == ["Fact A0 is here.", "Fact B0 leads."]
    assert [p for _, _, p in sample.supporting] == [0, 1]
    assert text[slice(*sample.gold_passages[1])] == "Fact B0 leads. Then B0."
    # all ten own paragraphs plus fillers; length within one passage of the target, never above
    assert all(f"\nDis 0-{k}\n" in text for k in range(8))
    tokens = len(words(text)["input_ids"])
    assert sample.input_tokens == tokens
    assert 150 - 12 < tokens <= 150
    assert len(passages) > 10


def test_hotpot_long_gold_positions_vary_and_are_seeded() -> None:
    records = [record(i) for i in range(30)]
    pool = hotpot_pool(records)
    positions = {
        tuple(build_hotpot_long(r, pool, words, 400, seed=0, half="test").metadata["gold_passage_numbers"])
        for r in records[:10]
    }
    assert len(positions) > 5
    again = build_hotpot_long(records[0], pool, words, 400, seed=0, half="test")
    assert again == build_hotpot_long(records[0], pool, words, 400, seed=0, half="test")
    assert again.text != build_hotpot_long(records[0], pool, words, 400, seed=1, half="test").text


# --------------------------------------------------------------------------------- L-Eval
def test_leval_selection(tmp_path: Path) -> None:
    lines = [
        {
            "input": "The river Nile is long. The capital is Cairo. " * 3,
            "instructions": ["Which river?", "Which capital?", "How many?", "A long one?"],
            "outputs": ["Nile", "the Cairo", "12", "a very long answer " * 10],
        },
        {"input": "word " * 500, "instructions": ["Which word?"], "outputs": ["word"]},
    ]
    (tmp_path / "task.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    samples = leval_samples(tmp_path, words, seed=0, tasks=["task"], questions=10, max_document_tokens=100)
    assert sorted(s.id for s in samples) == ["task-0-0", "task-0-1"]  # "12" not in the text; long answer; long doc
    assert {s.half for s in samples} <= {"calibration", "test"}
    everything = leval_samples(tmp_path, words, seed=0, tasks=["task"], questions=10, max_document_tokens=None)
    assert "task-1-0" in {s.id for s in everything}
    halves = {s.id: s.half for s in everything}
    assert all(halves[s.id] == s.half for s in samples)  # the cap does not move a question's half
    only_test = leval_samples(
        tmp_path, words, seed=0, tasks=["task"], questions=10, max_document_tokens=100, split="test"
    )
    assert [s.id for s in only_test] == [s.id for s in samples if s.half == "test"]
    only_calibration = leval_samples(
        tmp_path, words, seed=0, tasks=["task"], questions=10, max_document_tokens=100, split="calibration"
    )
    assert sorted(s.id for s in only_test + only_calibration) == sorted(s.id for s in samples)
    one = leval_samples(tmp_path, words, seed=0, tasks=["task"], questions=1, max_document_tokens=100)
    assert len(one) == 1 and one[0].id in {s.id for s in samples}


# --------------------------------------------------------------------------------- helpers
def test_locate_pieces_survives_whitespace_changes() -> None:
    text = "A. B  c. C. D , e!"
    assert locate_pieces("B c. D, e!", text) == [(3, 8), (12, 18)]
    assert locate_pieces("Z.", text) == []
    # the reference glues kept sentences together without a space
    assert locate_pieces("A.C. D , e!", text) == [(0, 2), (9, 11), (12, 18)]


def test_reference_kept_text_and_variants() -> None:
    assert reference_kept_text("Read: A. B.\nQ: why?", "Read: {context}\nQ: {question}") == "A. B."
    assert parse_variant('l12={"scoring_layer": 12}') == ("infiniretri[l12]", {"scoring_layer": 12})
    with pytest.raises(ValueError, match="JSON object"):
        parse_variant("x=[1]")
    with pytest.raises(ValueError, match="NAME="):
        parse_variant('{"scoring_layer": 12}')


def test_configure_parser_defaults_and_shared_options() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="the main CLI's shared model option")
    configure_parser(parser)  # no clash with the option the parser already has
    args = parser.parse_args(["--data", "d", "--lengths", "8k,32k", "--variant", 'l12={"scoring_layer": 12}'])
    assert args.lengths == [8000, 32000] and args.budgets == [256, 512, 1024]
    assert args.variant == [("infiniretri[l12]", {"scoring_layer": 12})]
    assert args.split == "all" and args.seed == 0 and args.model is None


def test_plot_styles_are_distinct_and_the_same_in_every_panel():
    from infiniretri_integrations.evaluation.evidence.report import method_styles

    methods = [f"method{i}" for i in range(12)]
    styles = method_styles(methods)
    assert len({(tuple(s["color"]), s["marker"]) for s in styles.values()}) == 12  # no two methods look alike
    assert method_styles(methods)["method7"] == styles["method7"]  # a method keeps its style across panels
