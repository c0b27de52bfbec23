"""The lexical-gap needles: the packaged pairs (size, categories, no word shared between a question
and its needle, hard negatives holding the key), the seeded split, and samples built over the
Paul Graham essays with the real SmolLM2 tokenizer (skipped without the shared data)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from infiniretri_integrations.evaluation.evidence_data import EvidenceSample
from infiniretri_integrations.evaluation.lexgap import (
    QUESTION_FRAME,
    LexGapPair,
    build_sample,
    build_samples,
    content_words,
    load_essays,
    load_pairs,
    needle_kept,
    pair_halves,
    pair_order,
    shared_content_words,
)

PAIRS = load_pairs()
TARGET = 4000


def test_the_set_has_enough_pairs_spread_evenly_over_categories_with_unique_characters() -> None:
    per_category = Counter(p.category for p in PAIRS)
    assert len(PAIRS) >= 96
    assert len(per_category) >= 8
    assert len(set(per_category.values())) == 1, per_category
    assert len({p.character for p in PAIRS}) == len(PAIRS)
    assert len({p.id for p in PAIRS}) == len(PAIRS)
    assert len({p.key.lower() for p in PAIRS}) == len(PAIRS)


@pytest.mark.parametrize("pair", PAIRS, ids=[p.id for p in PAIRS])
def test_question_and_needle_share_no_content_word(pair: LexGapPair) -> None:
    assert content_words(pair.question), pair.question
    assert shared_content_words(pair) == set(), (pair.question, pair.needle)
    assert not set(re.findall(r"[a-z]+", pair.needle.lower())) & QUESTION_FRAME, pair.needle


@pytest.mark.parametrize("pair", PAIRS, ids=[p.id for p in PAIRS])
def test_hard_negatives_contain_the_key_and_name_no_character(pair: LexGapPair) -> None:
    key = content_words(pair.key)
    assert key and key <= content_words(pair.question)
    names = {p.character.lower() for p in PAIRS}
    for negative in pair.hard_negatives:
        assert key <= content_words(negative), negative
        assert not names & set(re.findall(r"[a-z]+", negative.lower())), negative


@pytest.mark.parametrize(
    ("question", "needle", "shared"),
    [
        ("Who went camping?", "Ana lit a campfire.", {"camp"}),  # compound
        ("Who plays the bagpipes?", "Ana carried a bag.", {"bagpip"}),  # short part of a compound
        ("Who has visited Rome?", "Ana visits friends in Rome.", {"visit", "rome"}),  # inflection
        ("Which character owns a cat?", "Ana downloaded a song.", {"own"}),  # a word inside another
        ("Which character has been to Paris?", "Ana saw the Eiffel Tower.", set()),
    ],
)
def test_shared_content_words_finds_inflections_and_compounds(question: str, needle: str, shared: set[str]) -> None:
    pair = LexGapPair("x-01", "x", "Ana", needle, question, "key", ("one.", "two."))
    assert shared_content_words(pair) == shared


def _write(tmp_path: Path, records: list[dict[str, object]]) -> Path:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _record(**changes: object) -> dict[str, object]:
    record = {**asdict(PAIRS[0]), "hard_negatives": list(PAIRS[0].hard_negatives)}
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([_record(), _record(id="other")], "every character must be unique"),
        ([_record(key="Berlin")], "does not occur in the question"),
        ([_record(hard_negatives=["Paris is big.", "Lorenzo likes Paris."])], "names characters"),
        ([_record(needle="Lorenzo went out. He saw the Eiffel Tower.")], "exactly one sentence"),
        ([_record(needle="Somebody saw the Eiffel Tower.")], "does not name its character"),
        ([_record(hard_negatives=["Paris is big."])], "list of 2-3 sentences"),
        ([{"id": "x"}], "expected exactly the fields"),
    ],
)
def test_load_pairs_rejects_bad_records(tmp_path: Path, records: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_pairs(_write(tmp_path, records))


def test_the_split_is_half_and_half_in_every_category_and_deterministic_by_seed() -> None:
    halves = pair_halves(PAIRS, seed=0)
    assert halves == pair_halves(list(reversed(PAIRS)), seed=0)
    assert halves != pair_halves(PAIRS, seed=1)
    for category in {p.category for p in PAIRS}:
        counts = Counter(halves[p.id] for p in PAIRS if p.category == category)
        assert counts["calibration"] == counts["test"], (category, counts)
    order = pair_order(PAIRS, seed=0)
    assert sorted(p.id for p in order) == sorted(p.id for p in PAIRS)
    first = [p.category for p in order[: len({p.category for p in PAIRS})]]
    assert len(set(first)) == len(first)  # categories take turns


def test_needle_kept_needs_half_of_the_needle() -> None:
    text = "Intro sentence. Ana ate sushi. Outro."
    start = text.index("Ana")
    end = text.index(" Outro")
    sample = EvidenceSample("lexgap", "x", "q", ("Ana",), text, "test", supporting=((start, end, 0),))
    assert needle_kept(sample, [(start, end)])
    assert needle_kept(sample, [(0, start + 8)])
    assert not needle_kept(sample, [(0, start + 5)])
    assert not needle_kept(sample, [])


def test_build_samples_rejects_an_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be"):
        build_samples(tmp_path, None, [TARGET], split="train")  # type: ignore[arg-type]


def test_missing_essays_are_an_error_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        load_essays(tmp_path)


# ------------------------------------------------------------------------- with the essays
@pytest.fixture(scope="module")
def samples(essays_dir: Path, tokenizer) -> list[EvidenceSample]:
    return build_samples(essays_dir, tokenizer, [TARGET, 16000], seed=0, split="test", limit=5)


def test_no_character_name_occurs_in_the_essays(essays_dir: Path) -> None:
    essays = "\n".join(load_essays(essays_dir))
    assert [p.character for p in PAIRS if re.search(rf"\b{p.character}\b", essays)] == []


def test_samples_plant_the_needle_and_negatives_at_sentence_boundaries(samples, tokenizer) -> None:
    from infiniretri_integrations.core.segmentation import segment_documents

    by_id = {p.id: p for p in PAIRS}
    halves = pair_halves(PAIRS, seed=0)
    assert len(samples) == 10 and {s.target_tokens for s in samples} == {TARGET, 16000}
    for sample in samples:
        pair = by_id[sample.id]
        assert (sample.dataset, sample.half, sample.task, sample.answers) == (
            "lexgap",
            "test",
            pair.category,
            (pair.character,),
        )
        assert halves[sample.id] == "test" and sample.question == pair.question
        start, end, _ = sample.supporting[0]
        assert sample.text[start:end] == pair.needle
        assert sample.metadata["key"] == pair.key and 0 <= sample.metadata["depth"] <= 1
        negatives = [sample.text[s:e] for s, e in sample.metadata["negatives"]]
        assert negatives == list(pair.hard_negatives)
        others = [by_id[i] for i in sample.metadata["distractor_pairs"]]
        assert len(others) == 2 and all(o.category == pair.category and o.id != pair.id for o in others)
        distractors = [sample.text[s:e] for s, e in sample.metadata["distractors"]]
        assert distractors == [n for o in others for n in o.hard_negatives]
        sentences = {s.text.strip() for s in segment_documents([sample.text], tokenizer, 256)[0]}
        assert {pair.needle, *negatives, *distractors} <= sentences  # each planted one is a sentence
        named = [p.character for p in PAIRS if re.search(rf"\b{p.character}\b", sample.text)]
        assert named == [pair.character]
        assert sample.text.count(pair.needle) == 1
        assert needle_kept(sample, [(start, end)]) and not needle_kept(sample, sample.metadata["negatives"])


def test_samples_have_about_the_target_token_count(samples, tokenizer) -> None:
    for sample in samples:
        counted = len(tokenizer(sample.text, add_special_tokens=False)["input_ids"])
        assert counted == sample.input_tokens
        assert 0.98 * sample.target_tokens <= counted <= sample.target_tokens, (sample.id, counted)


def test_samples_are_identical_across_builds_and_vary_with_the_seed(samples, essays_dir: Path, tokenizer) -> None:
    again = build_samples(essays_dir, tokenizer, [TARGET, 16000], seed=0, split="test", limit=5)
    assert again == samples
    assert [s.metadata for s in again] == [s.metadata for s in samples]
    first = samples[0]
    pair = next(p for p in PAIRS if p.id == first.id)
    essays = load_essays(essays_dir)
    rebuilt = build_sample(pair, PAIRS, essays, tokenizer, TARGET, 0, first.half)
    assert rebuilt == first
    assert build_sample(pair, PAIRS, essays, tokenizer, TARGET, 1, first.half).text != first.text


def test_baselines_cli_prints_the_table(essays_dir: Path, tokenizer) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "infiniretri_integrations.evaluation.lexgap_baselines",
        "--essays",
        str(essays_dir),
        "--limit",
        "2",
        "--budgets",
        "256",
        "--methods",
        "bm25_sentences",
        "random_sentences",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lexgap 4K, test half (2 pairs, seed 0)" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| bm25") or line.startswith("| random")]
    assert len(rows) == 2 and all(re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\] \| \d\.\d\d \|$", r) for r in rows)
    bad = subprocess.run(
        [*command[:3], "--essays", str(essays_dir / "nope")], capture_output=True, text=True, env=env, check=False
    )
    assert bad.returncode != 0 and "nope" in bad.stderr
