"""Ponder's tokenizer against Hugging Face `tokenizers` (SmolLM2's original pre-tokenizer,
scripts/oracle_tokenizer.py) on a hand-written corpus and on seeded random strings."""
import random

import pytest

from conftest import MODEL

tokenizers = pytest.importorskip("tokenizers")

CORPUS = [
    "", " ", "   42", "3.14159", "1,000,000", "x=-17.5e3", "2024-11-25", "$\\frac{a}{b}$", "\\sqrt{x^2+y^2}",
    "naïve café résumé", "e\u0301", "日本語のテキスト", "中文，标点。", "한국어", "😀👍🏽👨‍👩‍👧", "مرحبا ١٢٣",
    "Ⅻ ½ ² ３", "tabs\t\tand\nnewlines\r\n", "trailing   ", "\n\n\n", "I'm they'll DON'T we've", "''''",
    "<|im_start|>user\nHi<|im_end|>", "<|im_start|", "<|endoftext|><|endoftext|>", "a<|im_end|>b",
    "def f(x):\n    return x ** 2  # square", "!!!???...", "\u00a0nbsp\u200bzero", "\x04control\x01bytes",
    "<think>Let me verify: 12 * 3 = 36.</think><answer>36</answer>",
]

ALPHABET = (list("abcXYZ019 \t\n\r'!?.,-+*/=$\\{}()<>|_") + ["é", "ß", "中", "語", "😀", "١", "½", "\u00a0", "\u3000",
            "<|im_start|>", "<|im_end|>", "'s", "'LL", "  ", "\x00", "\x7f"])


def random_strings(n, seed=20261125):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def oracle():
    from oracle_tokenizer import load_smollm2_tokenizer

    return load_smollm2_tokenizer(MODEL)


@pytest.mark.parametrize("text", CORPUS)
def test_corpus(model, oracle, text):
    want = oracle.encode(text, add_special_tokens=False).ids
    assert model.tokenize(text) == want
    assert model.detokenize(want) == oracle.decode(want, skip_special_tokens=False)


def test_random_strings(model, oracle):
    bad = []
    for text in random_strings(400):
        want = oracle.encode(text, add_special_tokens=False).ids
        got = model.tokenize(text)
        if got != want:
            bad.append((text, got, want))
    assert not bad, f"{len(bad)} mismatches, first: {bad[0]!r}"


def test_parse_special_off(model, oracle):
    text = "<|im_start|>user"
    ids = model.tokenize(text, parse_special=False)
    assert 1 not in ids
    assert model.detokenize(ids) == text
