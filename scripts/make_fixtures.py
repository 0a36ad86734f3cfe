#!/usr/bin/env python3
"""Regenerates the SmolLM2 oracle fixtures in Tests/Fixtures/ (deterministically).

  python3 scripts/make_fixtures.py [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf] [--out Tests/Fixtures]

Writes:
  smollm2_reference.json        list of cases: name, text, ids, logits_file, greedy_ids, greedy_top2_gap
  smollm2_<name>.logits.f32     raw little-endian float32, the vocab_size last-position logits of the prompt
  tokenizer_corpus.json         list of {text, ids}

Token ids always come from the oracle tokenizer (scripts/oracle_tokenizer.py, SmolLM2's
original Digits+ByteLevel pipeline), never from transformers' GGUF tokenizer import.
Logits/greedy come from transformers running the GGUF dequantized to fp32 on CPU.
Greedy decoding runs exactly GREEDY_STEPS steps with no EOS stop (it may run past
<|im_end|>), recomputing the full sequence each step (no KV cache); step k's gap is
top1 - top2 of the logits that produced greedy_ids[k] (step 0 = the prompt logits).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF dequant progress bar

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from oracle_tokenizer import load_smollm2_tokenizer  # noqa: E402

GREEDY_STEPS = 32
SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(user: str, system: str = SYSTEM_PROMPT) -> str:
    """SmolLM2's chat template (tokenizer.chat_template in the GGUF) with add_generation_prompt."""
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n"
        f"<|im_start|>assistant\n"
    )


GSM8K_Q = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?"
)

REFERENCE_CASES = [
    ("plain_capital", "The capital of France is"),
    ("chat_gsm8k", chatml(GSM8K_Q)),
    ("digits_spaces", "Compute 12 + 345 =   "),
    ("unicode_latex", "Café naïve — 東京 🙂: $\\frac{a}{b} + x^2 = \\sqrt{y}$, so"),
    ("chat_latex", chatml("Solve $2x + 3 = 11$ for $x$. Answer with \\boxed{}.")),
]

TOKENIZER_CORPUS = [
    # empty / trivial
    "",
    " ",
    "Hello world",
    "Hello, World!",
    "The capital of France is",
    # numbers (Digits splits every digit; whitespace before digits is where
    # transformers' GGUF import diverges from the original tokenizer)
    "   42",
    "42",
    "a  1",
    "\n 1",
    "x\t\t7",
    "3.14159",
    "1,000,000",
    "-12.5e-3",
    "2024-11-25T00:46:00Z",
    "Compute 12 + 345 =   ",
    "The answer is 1234567890.",
    "x\u00b2 \u00bd \u216b \u0663\u0664 \uff13",  # superscript two, one half, roman XII, Arabic-Indic, fullwidth digit
    # LaTeX
    "\\frac{a}{b}",
    "$x^2$",
    "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$",
    "\\begin{align} a &= b \\\\ c &= d \\end{align}",
    "\\sqrt{2} \\approx 1.414",
    # accents / scripts
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade \u00c5ngstr\u00f6m",
    "e\u0301 (combining acute) vs \u00e9",
    "Stra\u00dfe \u0152uvre \ufb01 ligature",
    "\u00c0\u00c9\u00ce\u00d5\u00dc \u00e0\u00e9\u00ee\u00f5\u00fc \u00f1 \u00e7 \u00f8",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ",
    "한국어 텍스트",
    "Привет, мир!",
    "مرحبا بالعالم",
    "שלום עולם",
    # emoji incl. ZWJ sequences, skin tones, flags, variation selectors
    "\U0001F600\U0001F44D\U0001F3FD\U0001F1EB\U0001F1F7",
    "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family",
    "\U0001F3F3\uFE0F\u200D\U0001F308 and \u2764\uFE0F\u200D\U0001F525",
    # whitespace
    "tabs\tand\nnewlines\r\nmixed",
    "trailing spaces   ",
    "   leading spaces",
    "\n\n\n",
    "line1\r\nline2\r\n",
    "a \t b",
    "  \n  \n",
    "multiple    internal     spaces",
    "\u00a0nbsp and\u200bzero width",
    "ctrl\u0001\u007f chars",
    # contractions (case-sensitive in the GPT-2 regex)
    "I'm sure they'll say it's fine",
    "DON'T YOU'LL WE'VE",
    "I've, you're, he'd",
    # special tokens inside text
    "<|im_start|>user\nHi<|im_end|>",
    chatml("What is 2+2?"),
    "text<|endoftext|>more",
    "<|im_start|",
    "<repo_name>ponder<file_sep>main.swift",
    " <|im_end|> ",
    # code
    "def foo(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < 10; ++i) { sum += a[i]; }",
    "let xs: [Int] = [1, 2, 3]\nprint(xs.map { $0 * 2 })",
    '{"key": [1, 2.5, null], "ok": true}',
    # punctuation / misc
    "!!!???...---",
    "Wait... what?!?! (really)",
    "====================",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2",
    "user@example.com",
    "antidisestablishmentarianism supercalifragilisticexpialidocious",
]


def dumps(obj, indent: int = 0, scalar=None) -> str:
    """JSON with dicts/lists-of-objects indented and lists of scalars on one line; `scalar`
    formats the items of scalar lists (default: json.dumps)."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad}  {json.dumps(k)}: {dumps(v, indent + 1, scalar)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj):
        items = [f"{pad}  {dumps(v, indent + 1, scalar)}" for v in obj]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    if scalar is not None and isinstance(obj, list):
        return "[" + ", ".join(scalar(x) for x in obj) + "]"
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def load_reference_model(gguf: str, threads: int):
    """transformers' fp32 model from the GGUF (it dequantizes and un-permutes Q/K itself),
    deterministic, on `threads` threads."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    return AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(gguf)),
        gguf_file=os.path.basename(gguf),
        dtype=torch.float32,
        attn_implementation="eager",
    )


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "Tests", "Fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    tok = load_smollm2_tokenizer(args.gguf)

    def encode(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False).ids

    # --- tokenizer corpus ---
    if len(set(TOKENIZER_CORPUS)) != len(TOKENIZER_CORPUS):
        raise SystemExit("duplicate corpus strings")
    corpus = []
    for text in TOKENIZER_CORPUS:
        ids = encode(text)
        # The oracle is lossless on everything in the corpus.
        assert tok.decode(ids, skip_special_tokens=False) == text, text
        corpus.append({"text": text, "ids": ids})
    write_text(os.path.join(args.out, "tokenizer_corpus.json"), dumps(corpus) + "\n")

    # --- model reference ---
    import torch
    model = load_reference_model(args.gguf, threads=2)
    model.eval()
    vocab_size = model.config.vocab_size

    cases = []
    for name, text in REFERENCE_CASES:
        ids = encode(text)
        with torch.no_grad():
            # No KV cache: every step re-runs the full sequence (simple, version-independent).
            def last_logits(seq: list[int]) -> torch.Tensor:
                out = model(torch.tensor([seq], dtype=torch.long), use_cache=False)
                return out.logits[0, -1].to(torch.float32)

            logits = last_logits(ids)
            assert logits.shape == (vocab_size,)
            logits_file = f"smollm2_{name}.logits.f32"
            logits.numpy().astype("<f4").tofile(os.path.join(args.out, logits_file))

            greedy, gaps = [], []
            step_logits = logits
            for step in range(GREEDY_STEPS):
                nxt = int(torch.argmax(step_logits))
                top2 = torch.topk(step_logits, 2).values
                greedy.append(nxt)
                gaps.append(round(float(top2[0] - top2[1]), 5))
                if step + 1 < GREEDY_STEPS:
                    step_logits = last_logits(ids + greedy)

        cases.append(
            {
                "name": name,
                "text": text,
                "ids": ids,
                "logits_file": logits_file,
                "greedy_ids": greedy,
                "greedy_top2_gap": gaps,
            }
        )
        top = torch.topk(logits, 3)
        print(
            f"{name:14s} prompt={len(ids):3d} tok  top3={[(int(i), tok.id_to_token(int(i)), round(float(v), 3)) for v, i in zip(top.values, top.indices)]}"
        )
        print(f"{'':14s} greedy: {tok.decode(greedy, skip_special_tokens=False)!r}  min_gap={min(gaps):.4f}")

    write_text(os.path.join(args.out, "smollm2_reference.json"), dumps(cases) + "\n")
    wanted = {c["logits_file"] for c in cases}
    for fn in sorted(os.listdir(args.out)):
        if fn.startswith("smollm2_") and fn.endswith(".logits.f32") and fn not in wanted:
            os.remove(os.path.join(args.out, fn))
            print(f"removed stale {fn}")

    total = 0
    for fn in sorted(os.listdir(args.out)):
        if fn.startswith("smollm2_") or fn == "tokenizer_corpus.json":
            total += os.path.getsize(os.path.join(args.out, fn))
    print(f"wrote {len(cases)} reference cases, {len(corpus)} corpus strings to {args.out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
