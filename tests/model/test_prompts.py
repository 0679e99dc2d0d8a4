"""The label rule follows CLIP's tokenizer (issue 17, N12): two labels tie only when their prompts give the same token
ids; a label is refused alone only when it is empty once a prompt reads it.

The tests' tiny tokenizer is transformers' `CLIPTokenizer` with a merge-free byte-level vocabulary: it builds the
normaliser (NFC, whitespace runs to one space, lowercase) and the pre-tokenizer of the real CLIP tokenizers, which
`test_the_tiny_tokenizer_normalises_as_clip` pins, so what ties here ties with `openai/clip-vit-base-patch16`."""

import json

import numpy as np
import pytest

from pointclip_hf.cli import main
from pointclip_hf.model.pipeline_pointclip import label_tokens
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.model.prompts import check_labels, comma_separated, display_label

CLOUD = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)

TOLD_APART = {
    "no-break space": ["teddy\u00a0bear", "chair"],
    "ideographic space": ["tea\u3000bowl", "chair"],
    "emoji ZWJ sequence": ["\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f468\U0001f469\U0001f467"],
    "byte order mark": ["\ufeffcat", "cat"],
    "bidi marks": ["\u200fcat", "\u202bcat\u202c", "cat"],
    "sharp s": ["straße", "strasse"],
    "final sigma": ["ς", "σ"],
}
READ_ALIKE = {
    "case": ["Cup", "cup"],
    "no-break space": ["teddy bear", "teddy\u00a0bear"],
    "ideographic space": ["tea bowl", "tea\u3000bowl"],
    "line break": ["ta ble", "ta\nble"],
    "tab and trailing space": ["chair\t", "chair "],
    "composed and decomposed accent": ["cafe\u0301", "caf\u00e9"],
    "underscore": ["teddy_bear", "teddy bear"],
}


def tokens_of(model, labels):
    return label_tokens(model, processor_for_model(model), labels)


def test_the_tiny_tokenizer_normalises_as_clip(zero_shot_model):
    normalizer = json.loads(processor_for_model(zero_shot_model).tokenizer.backend_tokenizer.normalizer.__getstate__())
    steps = [step["type"] for step in normalizer["normalizers"]]
    assert steps == ["NFC", "Replace", "Lowercase"] and normalizer["normalizers"][1]["pattern"]["Regex"] == "\\s+"


@pytest.mark.parametrize("name", list(TOLD_APART))
def test_labels_the_tokenizer_tells_apart_are_accepted(name, zero_shot_model):
    labels = TOLD_APART[name]
    assert check_labels(labels) == labels
    tokens = tokens_of(zero_shot_model, labels)
    rows = {tuple(row) for row in tokens["input_ids"].tolist()}
    assert len(rows) == len(labels)


def test_accepted_labels_are_scored(zero_shot_model):
    labels = list(dict.fromkeys(label for pair in TOLD_APART.values() for label in pair))
    scores = zero_shot_model.classify(CLOUD, labels)
    assert sorted(entry["label"] for entry in scores) == sorted(labels)
    assert np.isfinite([entry["score"] for entry in scores]).all()


@pytest.mark.parametrize("name", list(READ_ALIKE))
def test_labels_the_tokenizer_reads_alike_are_refused(name, zero_shot_model):
    first, second = READ_ALIKE[name]
    check_labels([first, second])  # distinct strings: only their tokens tie
    with pytest.raises(ValueError, match="duplicates") as error:
        tokens_of(zero_shot_model, ["lamp", first, second])
    message = str(error.value)
    assert "\n" not in message and repr(first) in message and repr(second) in message


@pytest.mark.parametrize("label", ["", " ", "\u00a0\u3000", "\n\t", "_", " _ "])
def test_empty_labels_are_refused_before_any_model(label):
    with pytest.raises(ValueError, match="non-empty") as error:
        check_labels(["chair", label])
    assert "\n" not in str(error.value)


def test_the_same_string_twice_is_refused_before_any_model():
    with pytest.raises(ValueError, match="duplicates: 'chair' and 'chair' are the same string"):
        check_labels(["chair", "table", "chair"])


def test_display_label_keeps_one_line():
    assert display_label("straße") == "straße"
    assert display_label("b\nad") == "b\\nad"
    assert display_label("\u200fcat") == "\\u200fcat"


def test_a_label_with_a_line_break_is_evaluated_and_shown_on_one_line(tiny_clip_dir, tmp_path, capsys):
    for name in ("b\nad", "ok"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        np.save(tmp_path / "tree" / name / "a.npy", CLOUD)
    argv = ["evaluate", "--dataset", tmp_path / "tree", "--split", "train", "--output-dir", tmp_path / "ev",
            "--model", tiny_clip_dir, "-q"]  # fmt: skip
    assert main([str(arg) for arg in argv]) == 0
    out = capsys.readouterr().out
    assert "  b\\nad " in out and all(line.isprintable() for line in out.splitlines())
    assert (tmp_path / "ev" / "confusion_matrix.png").stat().st_size > 0


def test_comma_separated_items_are_never_dropped():
    assert comma_separated(" chair , table ", "--labels") == ["chair", "table"]
    for text in ("a,,b", "a,b,", ",", "a, ,b"):
        with pytest.raises(ValueError, match="--labels holds an empty item"):
            comma_separated(text, "--labels")
