#!/usr/bin/env python3
"""Reference ("oracle") tokenizer for SmolLM2, rebuilt from GGUF metadata.

Builds a Hugging Face `tokenizers.Tokenizer` with SmolLM2's ORIGINAL
tokenizer.json pipeline, using only the vocab/merges stored in the GGUF:

  normalizer     : none
  pre_tokenizer  : Sequence([Digits(individual_digits=True),
                             ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
  model          : BPE(dropout=None, unk_token=None, fuse_unk=False, byte_fallback=False)
  decoder        : ByteLevel
  post_processor : none (no BOS is added; tokenizer.ggml.add_bos_token is False)
  added tokens   : the control tokens (token_type == 3, ids 0..16 such as
                   <|endoftext|>, <|im_start|>, <|im_end|>) registered as special
                   tokens, so they are matched whole when they occur in text.

Do NOT use transformers' GGUF tokenizer import as the reference: it builds a
plain GPT-2 ByteLevel pre-tokenizer and drops the Digits step, so e.g. "   42"
or "2024" tokenize differently from the original SmolLM2 tokenizer.

Usage:  python3 scripts/oracle_tokenizer.py [--gguf PATH] TEXT...
"""
from __future__ import annotations

import os
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

DEFAULT_GGUF = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "models", "SmolLM2-135M-Instruct.Q4_1.gguf"
)

TOKEN_TYPE_CONTROL = 3


def read_gguf_vocab(gguf_path: str) -> tuple[list[str], list[int], list[str]]:
    """Returns (tokens, token_types, merges) from the GGUF tokenizer metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    fields = reader.fields
    model = fields["tokenizer.ggml.model"].contents()
    pre = fields["tokenizer.ggml.pre"].contents()
    if model != "gpt2" or pre != "smollm":
        raise ValueError(f"expected tokenizer.ggml.model=gpt2, pre=smollm; got {model!r}, {pre!r}")
    tokens = list(fields["tokenizer.ggml.tokens"].contents())
    token_types = [int(t) for t in fields["tokenizer.ggml.token_type"].contents()]
    merges = list(fields["tokenizer.ggml.merges"].contents())
    return tokens, token_types, merges


def load_smollm2_tokenizer(gguf_path: str = DEFAULT_GGUF) -> Tokenizer:
    tokens, token_types, merges = read_gguf_vocab(gguf_path)
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("duplicate token strings in GGUF vocab")
    merge_pairs = []
    for m in merges:
        a, sep, b = m.partition(" ")
        if not sep or not a or not b or " " in b:
            raise ValueError(f"malformed merge {m!r}")
        merge_pairs.append((a, b))

    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merge_pairs,
            dropout=None,
            unk_token=None,
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = None

    specials = [
        AddedToken(tokens[i], single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
        for i, t in enumerate(token_types)
        if t == TOKEN_TYPE_CONTROL
    ]
    tok.add_special_tokens(specials)
    for i, t in enumerate(token_types):
        if t == TOKEN_TYPE_CONTROL and tok.token_to_id(tokens[i]) != i:
            raise ValueError(f"special token {tokens[i]!r} did not keep id {i}")
    return tok


def main(argv: list[str]) -> int:
    gguf_path = DEFAULT_GGUF
    if len(argv) >= 2 and argv[0] == "--gguf":
        gguf_path, argv = argv[1], argv[2:]
    tok = load_smollm2_tokenizer(gguf_path)
    texts = argv if argv else [sys.stdin.read()]
    for text in texts:
        enc = tok.encode(text, add_special_tokens=False)
        print(repr(text))
        print("  ids   :", enc.ids)
        print("  tokens:", enc.tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
