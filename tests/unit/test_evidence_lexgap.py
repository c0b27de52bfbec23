"""The lexical-gap needles as the evidence benchmark's ``lexgap`` dataset: loading ``--datasets
lexgap`` from a tiny essays folder (halves, lengths, labels; the real SmolLM2 tokenizer), the
needle and hard-negative metrics on hand-made spans, the records and report tables, the
baselines script scoring with the same functions, and a missing essays folder named in the error."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from infiniretri_integrations.evaluation import evidence
from infiniretri_integrations.evaluation.evidence import (
    DATASET_LENGTHS,
    DATASETS,
    DEFAULT_DATASETS,
    LEXGAP_FOLDER,
    EvidenceBench,
    MethodSpec,
    Selection,
    check_inputs,
    compact_tables,
    configure_parser,
    dataset_lengths,
    evidence_metrics,
    load_samples,
    markdown_table,
    negatives_kept,
    paired_differences,
    paired_table,
    primary_metric,
    run_benchmark,
    span_covered,
    summarize,
)
from infiniretri_integrations.evaluation.evidence_data import EvidenceSample
from infiniretri_integrations.evaluation.lexgap import LENGTHS, load_pairs, needle_kept, pair_halves, pair_order
from infiniretri_integrations.evaluation.lexgap_baselines import evaluate

PAIRS = load_pairs()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A shared-data folder holding only three short essays (the builder repeats them as needed)."""
    folder = tmp_path / "data" / LEXGAP_FOLDER
    folder.mkdir(parents=True)
    for number in range(3):
        sentences = [
            f"Essay {number} makes point {k}: a small company grows when its founders talk to users every week."
            for k in range(40)
        ]
        (folder / f"essay{number}.txt").write_text(" ".join(sentences), encoding="utf-8")
    return tmp_path / "data"


# ------------------------------------------------------------------------------------ options
def test_lexgap_is_a_dataset_asked_for_by_name_with_its_own_default_lengths() -> None:
    assert "lexgap" in DATASETS and "lexgap" not in DEFAULT_DATASETS
    args = parse("--data", "d")
    assert args.datasets == ["hotpotqa-long", "leval"] and args.lengths is None
    assert dataset_lengths(args, "lexgap") == list(LENGTHS) == [4000, 16000, 64000]
    assert dataset_lengths(args, "hotpotqa-long") == list(DATASET_LENGTHS["hotpotqa-long"]) == [8000, 32000, 128000]
    given = parse("--data", "d", "--datasets", "lexgap", "--lengths", "16k,4k")
    assert dataset_lengths(given, "lexgap") == dataset_lengths(given, "hotpotqa-long") == [4000, 16000]


def test_primary_metric_of_lexgap_is_needle_recall() -> None:
    assert primary_metric("lexgap 4K") == "supporting_recall"
    assert primary_metric("hotpotqa-long 8K") == "supporting_recall" and primary_metric("leval") == "answer_recall"


# ------------------------------------------------------------------------------------ loading
def test_loading_lexgap_gives_the_half_the_lengths_and_the_labels(data: Path, tokenizer: Any) -> None:
    args = parse("--data", str(data), "--datasets", "lexgap", "--lengths", "1k,2k", "--split", "test", "--limit", "3")
    samples = load_samples(args, tokenizer)
    halves = pair_halves(PAIRS, seed=0)
    first = [p.id for p in pair_order(PAIRS, seed=0) if halves[p.id] == "test"][:3]
    assert [(s.setting, s.id) for s in samples] == [(f"lexgap {k}K", i) for k in (1, 2) for i in first]
    by_id = {p.id: p for p in PAIRS}
    for sample in samples:
        pair = by_id[sample.id]
        assert (sample.dataset, sample.half, sample.task) == ("lexgap", "test", pair.category)
        assert sample.question == pair.question and sample.answers == (pair.character,)
        assert sample.target_tokens in (1000, 2000) and 0.9 * sample.target_tokens <= sample.input_tokens
        assert sample.input_tokens <= sample.target_tokens
        start, end, _ = sample.supporting[0]
        assert sample.text[start:end] == pair.needle
        assert [sample.text[s:e] for s, e in sample.metadata["negatives"]] == list(pair.hard_negatives)
    calibration = load_samples(
        parse("--data", str(data), "--datasets", "lexgap", "--lengths", "1k", "--split", "calibration"), tokenizer
    )
    assert len(calibration) == len(PAIRS) // 2 and {s.half for s in calibration} == {"calibration"}
    assert not {s.id for s in calibration} & set(first)
    seeded = load_samples(
        parse("--data", str(data), "--datasets", "lexgap", "--lengths", "1k", "--split", "test", "--seed", "1"),
        tokenizer,
    )
    halves_1 = pair_halves(PAIRS, seed=1)
    assert [s.id for s in seeded] == [p.id for p in pair_order(PAIRS, seed=1) if halves_1[p.id] == "test"]
    assert {s.id for s in seeded} != {p.id for p in PAIRS if halves[p.id] == "test"}  # --seed moves the split


def test_a_missing_essays_folder_is_an_error_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = tmp_path / LEXGAP_FOLDER
    args = parse("--data", str(tmp_path), "--datasets", "lexgap")
    with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
        check_inputs(args)
    with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
        load_samples(args, tokenizer=None)
    check_inputs(parse("--data", str(tmp_path), "--datasets", "hotpotqa-long"))  # only lexgap needs the essays
    with pytest.raises(ValueError, match=r"unknown datasets \['nope'\]"):
        check_inputs(parse("--data", str(tmp_path), "--datasets", "lexgap,nope"))
    # the command line refuses before loading a model: exit 2, the path in the message
    code = evidence.main(["--data", str(tmp_path), "--datasets", "lexgap", "--methods", "cheap", "--out", "x.json"])
    assert code == 2 and str(expected) in capsys.readouterr().err


# ------------------------------------------------------------------------------------ metrics
TEXT = "Intro one. Rome has a big stadium. Ana ate sushi. Rome fans shout loudly. Outro."


def lexgap_sample(target: int = 4000, sample_id: str = "x-01", half: str = "test") -> EvidenceSample:
    needle = TEXT.index("Ana")
    first = TEXT.index("Rome has")
    second = TEXT.index("Rome fans")
    return EvidenceSample(
        "lexgap",
        sample_id,
        "Who has been to Japan?",
        ("Ana",),
        TEXT,
        half,
        task="places",
        target_tokens=target,
        supporting=((needle, needle + len("Ana ate sushi."), 0),),
        metadata={"negatives": [[first, TEXT.index(" Ana")], [second, TEXT.index(" Outro")]]},
    )


def test_needle_and_negatives_metrics_on_hand_made_spans() -> None:
    sample = lexgap_sample()
    (needle_start, needle_end, _) = sample.supporting[0]
    (a1, b1), (a2, b2) = sample.metadata["negatives"]
    nothing = evidence_metrics(sample, [])
    assert nothing == {"supporting_recall": 0.0, "both_paragraphs": None, "answer_recall": 0.0, "negatives_kept": 0.0}
    needle_only = evidence_metrics(sample, [(needle_start, needle_end)])
    assert (needle_only["supporting_recall"], needle_only["negatives_kept"]) == (1.0, 0.0)
    assert needle_only["answer_recall"] == 1.0 and needle_only["both_paragraphs"] is None
    one_negative = evidence_metrics(sample, [(a1, b1)])
    assert (one_negative["supporting_recall"], one_negative["negatives_kept"]) == (0.0, 0.5)
    everything = evidence_metrics(sample, [(0, len(TEXT))])
    assert (everything["supporting_recall"], everything["negatives_kept"]) == (1.0, 1.0)
    # half of a sentence's characters keeps it, one character fewer does not; overlaps count once
    length = needle_end - needle_start
    half = needle_start + (length + 1) // 2
    assert evidence_metrics(sample, [(needle_start, half)])["supporting_recall"] == 1.0
    assert evidence_metrics(sample, [(needle_start, half - 1)])["supporting_recall"] == 0.0
    assert evidence_metrics(sample, [(needle_start, half - 1)] * 3)["supporting_recall"] == 0.0
    negative_half = a2 + (b2 - a2 + 1) // 2
    assert negatives_kept(sample, [(a2, negative_half)]) == 0.5
    assert negatives_kept(sample, [(a2, negative_half - 1), (a2, negative_half - 1)]) == 0.0


def test_the_needle_rule_is_one_function() -> None:
    sample = lexgap_sample()
    start, end, _ = sample.supporting[0]
    for cut in range(start, end + 1):
        for kept in ([(start, cut)], [(cut, end)], [(0, cut)]):
            expected = span_covered((start, end), kept)
            assert needle_kept(sample, kept) is expected
            assert evidence_metrics(sample, kept)["supporting_recall"] == float(expected)


def test_other_datasets_have_no_negatives_metric() -> None:
    leval = EvidenceSample("leval", "q", "Where?", ("Oslo",), "Alpha was born in Oslo.", "test")
    assert negatives_kept(leval, [(0, 5)]) is None
    assert set(evidence_metrics(leval, [(0, 5)])) == {"supporting_recall", "both_paragraphs", "answer_recall"}


# ------------------------------------------------------------------------------------ records and report
def fixed_method(spans: dict[str, list[tuple[int, int]]]) -> MethodSpec:
    """A method keeping the given spans of each sample (by id) at every budget."""

    def run(_bench: Any, sample: EvidenceSample, budgets: Any, _options: Any) -> dict[int | None, Selection]:
        return {b: Selection(spans=spans[sample.id], kept_tokens=10, units=1) for b in budgets}

    return MethodSpec(run=run, description="fixed spans")


def test_records_and_tables_of_lexgap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needle_start, needle_end, _ = lexgap_sample().supporting[0]
    (a1, b1), (a2, b2) = lexgap_sample().metadata["negatives"]
    samples = [lexgap_sample(4000, "x-01"), lexgap_sample(4000, "x-02"), lexgap_sample(4000, "x-03", "calibration")]
    keeps = {
        "good": {"x-01": [(needle_start, needle_end)], "x-02": [(needle_start, needle_end), (a1, b1)], "x-03": []},
        "bm25_sentences": {"x-01": [(a1, b1), (a2, b2)], "x-02": [(a1, b1), (a2, b2)], "x-03": [(a1, b1)]},
    }
    for name, spans in keeps.items():
        monkeypatch.setitem(evidence.METHODS, name, fixed_method(spans))
    out = tmp_path / "out.json"
    data = run_benchmark(EvidenceBench(None), samples, [("bm25_sentences", {}), ("good", {})], [256, 512], out)
    records = data["records"]
    assert len(records) == 12 and {r["setting"] for r in records} == {"lexgap 4K"}
    good = {(r["id"], r["budget"]): r for r in records if r["method"] == "good"}
    assert good["x-01", 256]["supporting_recall"] == 1.0 and good["x-01", 256]["negatives_kept"] == 0.0
    assert good["x-02", 512]["negatives_kept"] == 0.5 and good["x-02", 512]["both_paragraphs"] is None
    assert all(r["negatives_kept"] == 1.0 for r in records if r["method"] == "bm25_sentences" and r["half"] == "test")

    rows = summarize(data, "test", resamples=200)
    row = next(r for r in rows if r["method"] == "good" and r["budget"] == 256)
    assert row["supporting_recall"]["mean"] == 1.0 and row["negatives_kept"]["mean"] == 0.25
    compact = compact_tables(rows)
    assert "**lexgap 4K**, needle recall (n = 2)" in compact
    assert "**lexgap 4K**, own hard negatives kept (n = 2)" in compact
    assert "| good | 1.00 [1.00, 1.00] | 1.00 [1.00, 1.00] |" in compact
    paired = paired_differences(data, "bm25_sentences", "test", resamples=200)
    assert [(r["method"], r["budget"], r["difference"]) for r in paired] == [("good", 256, 1.0), ("good", 512, 1.0)]
    assert "**lexgap 4K**, needle recall minus bm25_sentences (paired, n = 2)" in paired_table(paired, "bm25_sentences")
    table = markdown_table(rows)
    assert table.splitlines()[0].endswith(
        "| supporting recall (lexgap: needle) | both paragraphs | answer recall (n) | own hard negatives kept |"
    )
    assert "| lexgap 4K | good | 256 | 2 | 10 | 1.00 [1.00, 1.00] | - |" in table


def test_tables_without_lexgap_are_unchanged() -> None:
    records = [
        {
            "setting": "hotpotqa-long 8K",
            "method": "bm25_sentences",
            "budget": 256,
            "half": "test",
            "id": "q",
            "kept_tokens": 250,
            "input_tokens": 8000,
            "supporting_recall": 1.0,
            "both_paragraphs": 1.0,
            "answer_recall": None,
        }
    ]
    rows = summarize({"records": records}, "test", resamples=50)
    assert rows[0]["negatives_kept"] is None
    assert markdown_table(rows).splitlines()[0] == (
        "| setting | method | budget | n | kept tokens | supporting recall | both paragraphs | answer recall (n) |"
    )
    assert "negatives" not in compact_tables(rows)
    assert "**hotpotqa-long 8K**, supporting recall (n = 1)" in compact_tables(rows)


def test_the_baselines_script_scores_with_the_benchmark_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    needle_start, needle_end, _ = lexgap_sample().supporting[0]
    (a1, b1), _ = lexgap_sample().metadata["negatives"]
    spans = {"x-01": [(needle_start, needle_end), (a1, b1)], "x-02": [(a1, b1)]}
    monkeypatch.setitem(evidence.METHODS, "fixed", fixed_method(spans))
    samples = [lexgap_sample(4000, "x-01"), lexgap_sample(4000, "x-02")]
    results = evaluate(EvidenceBench(None), samples, ["fixed"], [256])
    assert results == {"fixed": {256: {"needle": [1.0, 0.0], "negatives": [0.5, 0.5]}}}
    leval = EvidenceSample("leval", "q", "Where?", ("Oslo",), TEXT, "test")
    monkeypatch.setitem(evidence.METHODS, "fixed", fixed_method({"q": [(0, 5)]}))
    with pytest.raises(ValueError, match="'q' of 'leval' has no needle"):
        evaluate(EvidenceBench(None), [leval], ["fixed"], [256])


def test_int8_scoring_is_recorded_and_not_mixed_into_a_full_precision_file(
    data: Path, tiny_llama_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    out = tmp_path / "int8.json"
    argv = ["--data", str(data), "--datasets", "lexgap", "--lengths", "1k", "--split", "test", "--limit", "1"]
    argv += ["--methods", "infiniretri", "--budgets", "128", "--model", str(tiny_llama_folder), "--quiet"]
    assert evidence.main([*argv, "--int8", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["meta"]["scoring_int8"] is True
    assert [r["method"] for r in saved["records"]] == ["infiniretri"]
    capsys.readouterr()
    argv[argv.index("1", argv.index("--limit"))] = "2"  # one more pair: a run that would add records
    assert evidence.main([*argv, "--out", str(out)]) != 0  # the full-precision engine may not add to it
    assert "scoring_int8" in capsys.readouterr().err
