#!/usr/bin/env python3
"""Regenerates Tests/Fixtures/smollm2_grads.json (deterministically): PyTorch autograd gradients
of SmolLM2-135M-Instruct for one fixed 2 x 16 batch.

  python3 scripts/make_grad_fixtures.py [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf] [--out Tests/Fixtures]

Batch (token ids from the oracle tokenizer, scripts/oracle_tokenizer.py):
  seq 0  ChatML Q&A (no system prompt), truncated to 16 ids; the assistant content starts at
         index `completion_start[0]`.
  seq 1  a plain sentence, padded at the end with id 2 (<|im_end|>) to 16 ids; `real_len[1]` real ids.

targets[b][t] = tokens[b][t+1] when tokens[b][t+1] is a real (non-padding) token that is a
completion token (seq 0: index t+1 >= completion_start, i.e. the assistant content; seq 1: every
real token), else -1. So the last position and every padding position are -1. weights[b][t] = 1
where targets != -1, else 0.

Loss = - sum_{b,t: target != -1} log_softmax(logits[b, t])[target[b, t]]   (a SUM, not a mean),
fp32 forward/backward on CPU, each sequence from position 0 (position_ids 0..15), attention_mask
all ones (padding is at the end, so causal attention keeps it out of every real position).

Output JSON:
  tokens, targets, weights         2 x 16 ints
  completion_start, real_len       per sequence
  loss                             float64 sum of the fp32 per-token NLLs
  token_nll                        2 x 16, fp32 per-token NLL (0 where target == -1)
  tensors: {HF name: {"shape", "norm" (float64 Frobenius norm of the fp32 gradient), and one of
            "values" (full gradient, flat), "rows" (rows 0..3 of the [out, in] gradient),
            "row_ids" + "rows" (embedding rows for those token ids)}}
Gradient floats are written as the shortest decimal that round-trips to the float32 value.
model.embed_tokens.weight is tied to the LM head, so its gradient includes both uses.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF dequant progress bar
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from oracle_tokenizer import load_smollm2_tokenizer  # noqa: E402
from make_fixtures import dumps as dumps_with, load_reference_model  # noqa: E402

SEQ_LEN = 16
PAD_ID = 2  # <|im_end|>
N_ROWS = 4

CHAT_PROMPT = "<|im_start|>user\n7*8?<|im_end|>\n<|im_start|>assistant\n"
CHAT_COMPLETION = "<think>7*8=56</think><answer>56</answer><|im_end|>"
PLAIN_TEXT = "The quick brown fox jumps over the lazy dog."

FULL = [
    "model.norm.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.29.post_attention_layernorm.weight",
]
ROWS = [
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.weight",
    "model.layers.14.self_attn.v_proj.weight",
    "model.layers.14.self_attn.o_proj.weight",
    "model.layers.29.mlp.gate_proj.weight",
    "model.layers.29.mlp.up_proj.weight",
    "model.layers.29.mlp.down_proj.weight",
]
EMBED = "model.embed_tokens.weight"
EMBED_ROW_IDS = [1, 2, 28, 216]


class F32:
    """A float32 value that serializes as its shortest round-trip decimal."""

    __slots__ = ("s",)

    def __init__(self, x) -> None:
        import numpy as np

        v = np.float32(x)
        if not np.isfinite(v):
            raise ValueError(f"non-finite gradient value {v}")
        self.s = str(v)  # numpy: shortest repr that round-trips to this float32
        assert np.float32(float(self.s)) == v


def dumps(obj) -> str:
    return dumps_with(obj, scalar=scalar)


def scalar(x) -> str:
    if isinstance(x, F32):
        return x.s
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"non-finite value {x}")
        return repr(x)  # float64, shortest round-trip
    return json.dumps(x, ensure_ascii=False)


def f32_list(t) -> list:
    return [F32(v) for v in t.detach().reshape(-1).numpy()]


def build_batch(tok) -> dict:
    def encode(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False).ids

    prompt = encode(CHAT_PROMPT)
    full0 = encode(CHAT_PROMPT + CHAT_COMPLETION)
    assert full0[: len(prompt)] == prompt, "prompt ids must be a prefix of the full ids"
    assert len(full0) >= SEQ_LEN
    seq0 = full0[:SEQ_LEN]
    start0 = len(prompt)
    assert start0 < SEQ_LEN - 1, "need some completion inside the 16 ids"

    plain = encode(PLAIN_TEXT)
    assert PAD_ID not in plain and len(plain) < SEQ_LEN
    seq1 = plain + [PAD_ID] * (SEQ_LEN - len(plain))

    seqs = [seq0, seq1]
    starts = [start0, 0]
    real = [SEQ_LEN, len(plain)]
    targets = []
    for seq, start, n in zip(seqs, starts, real):
        row = []
        for t in range(SEQ_LEN):
            nxt = t + 1
            row.append(seq[nxt] if (nxt < n and nxt >= start) else -1)
        targets.append(row)
    weights = [[1 if y != -1 else 0 for y in row] for row in targets]
    return {
        "tokens": seqs,
        "targets": targets,
        "weights": weights,
        "completion_start": starts,
        "real_len": real,
        "texts": [CHAT_PROMPT + CHAT_COMPLETION, PLAIN_TEXT],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "Tests", "Fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    tok = load_smollm2_tokenizer(args.gguf)
    batch = build_batch(tok)

    import torch
    model = load_reference_model(args.gguf, threads=1)
    model.eval()  # no dropout (SmolLM2 has none anyway)
    params = dict(model.named_parameters())
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight is params[EMBED], "expected lm_head tied to embed_tokens"
    for p in model.parameters():
        assert p.dtype == torch.float32
        p.requires_grad_(True)
        p.grad = None

    tokens = torch.tensor(batch["tokens"], dtype=torch.long)
    targets = torch.tensor(batch["targets"], dtype=torch.long)
    B, T = tokens.shape
    position_ids = torch.arange(T, dtype=torch.long).unsqueeze(0).expand(B, T).contiguous()
    attention_mask = torch.ones(B, T, dtype=torch.long)

    out = model(
        input_ids=tokens,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
    )
    logits = out.logits.to(torch.float32)
    assert logits.shape == (B, T, model.config.vocab_size)
    logp = torch.log_softmax(logits, dim=-1)
    mask = targets != -1
    safe = targets.clamp(min=0)
    nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1) * mask.to(torch.float32)
    loss = nll.sum()
    loss.backward()
    loss64 = float(nll.detach().double().sum())

    # Sanity: each sequence is independent of the other (batching must not leak).
    with torch.no_grad():
        for b in range(B):
            solo = model(
                input_ids=tokens[b : b + 1],
                attention_mask=attention_mask[b : b + 1],
                position_ids=position_ids[b : b + 1],
                use_cache=False,
            ).logits
            n = batch["real_len"][b]
            diff = float((solo[0, :n] - logits[b, :n]).abs().max())
            assert diff < 1e-3, f"seq {b}: batched vs solo logits differ by {diff}"

    tensors: dict = {}

    def norm64(g) -> float:
        return float(g.detach().double().norm())

    for name in FULL:
        g = params[name].grad
        tensors[name] = {"shape": list(g.shape), "norm": norm64(g), "values": f32_list(g)}
    for name in ROWS:
        g = params[name].grad
        tensors[name] = {
            "shape": list(g.shape),
            "norm": norm64(g),
            "rows": [f32_list(g[r]) for r in range(N_ROWS)],
        }
    g = params[EMBED].grad
    tensors[EMBED] = {
        "shape": list(g.shape),
        "norm": norm64(g),
        "row_ids": EMBED_ROW_IDS,
        "rows": [f32_list(g[i]) for i in EMBED_ROW_IDS],
    }

    doc = {
        "model": os.path.basename(args.gguf),
        "texts": batch["texts"],
        "tokens": batch["tokens"],
        "targets": batch["targets"],
        "weights": batch["weights"],
        "completion_start": batch["completion_start"],
        "real_len": batch["real_len"],
        "loss": loss64,
        "token_nll": [f32_list(nll[b]) for b in range(B)],
        "tensors": tensors,
    }
    path = os.path.join(args.out, "smollm2_grads.json")
    text = dumps(doc) + "\n"
    json.loads(text)  # must be valid JSON
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)

    for b in range(B):
        print(f"seq {b}: tokens={batch['tokens'][b]}")
        print(f"       {[tok.id_to_token(i) for i in batch['tokens'][b]]}")
        print(f"       targets={batch['targets'][b]}")
    print(f"n_targets={int(mask.sum())}  loss(sum)={loss64!r}  fp32 loss={float(loss.detach())!r}")
    for name, t in tensors.items():
        print(f"  {name:50s} shape={t['shape']}  |grad|_F={t['norm']!r}")
    size = os.path.getsize(path)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    print(f"wrote {path} ({size} bytes, sha256 {sha})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
