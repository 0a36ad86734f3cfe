#!/usr/bin/env python3
"""Inference throughput: Ponder vs llama.cpp (llama-cpp-python) vs transformers, one run, one machine.

  python3 bench/bench_inference.py [--engines ponder,llamacpp,transformers] [--threads 2]
                                   [--max-tokens 128] [--group 8] [--repeats 2]

Model: SmolLM2-135M-Instruct, all three engines on the same F32 GGUF
(models/SmolLM2-135M-Instruct.F32.gguf, created from the Q4_1 GGUF with gguf-py if missing).

Scenarios (prompt: a GSM8K question in SmolLM2's chat template, 128 tokens):
  prefill  tokens/s processing the prompt (best of 3)
  decode   batch 1, up to --max-tokens greedy tokens; generated tokens / decode time (prefill excluded)
  group    --group completions of the one prompt, temperature 0.8 sampling;
           total generated tokens / decode time (prefill excluded)
Each engine runs in its own child process (no thread-pool interference between engines),
is warmed up once, and every timed scenario is repeated --repeats times (best kept).

Prints a markdown table with Ponder/peer ratios and writes bench/out/inference.json.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(ROOT, "models")
Q4_GGUF = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
F32_GGUF = os.path.join(MODELS, "SmolLM2-135M-Instruct.F32.gguf")
OUT_DIR = os.path.join(HERE, "out")
PONDER_LIB_DEFAULT = os.path.join(ROOT, ".build", "release", "libponder.so")
PONDER_CLI = os.path.join(ROOT, ".build", "release", "ponder-cli")

SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
GSM8K_Q = (
    "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' market "
    "daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' "
    "market? Let's think step by step: explain each calculation you make, then give the final "
    "answer as a single number on the last line, after the marker ####."
)
# SmolLM2's chat template (ChatML) with the generation prompt; 128 tokens with SmolLM2's tokenizer.
PROMPT = (
    f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
    f"<|im_start|>user\n{GSM8K_Q}<|im_end|>\n"
    f"<|im_start|>assistant\n"
)

GROUP_TEMPERATURE = 0.8
GROUP_SEED = 1

# transformers fp32, 2 threads, on this kind of machine (figures given with the task), and the targets.
REFERENCE = {
    "transformers_reported": {"prefill": 482.0, "decode": 25.0, "group": 96.0},
    "targets": "Ponder decode >= llama.cpp decode (F32 GGUF); Ponder group >= 3x transformers group",
}

ENGINE_LABELS = {"ponder": "Ponder", "llamacpp": "llama.cpp", "transformers": "transformers"}


# --------------------------------------------------------------------------------------------
# F32 GGUF
# --------------------------------------------------------------------------------------------

def make_f32_gguf(src: str, dst: str) -> None:
    """Copies every metadata field of `src` and writes each tensor dequantized to F32."""
    import numpy as np
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    tmp = dst + ".tmp"
    writer = gguf.GGUFWriter(tmp, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        # GGUF.* are virtual (header) fields; general.architecture is written by GGUFWriter.
        if field.name.startswith("GGUF.") or field.name == gguf.Keys.General.ARCHITECTURE:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.ALL_F32)
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    for t in reader.tensors:
        # reader: t.shape is ggml order (ne0 first); t.data is numpy order (rows, row bytes) for
        # quantized types. dequantize() returns numpy order (rows, ne0), which add_tensor writes
        # back reversed, i.e. the same ggml shape.
        w = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        expect = tuple(int(d) for d in reversed(t.shape.tolist()))
        if w.shape != expect:
            w = w.reshape(expect)
        writer.add_tensor(t.name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)


def verify_f32_gguf(q4: str, f32: str, steps: int = 32) -> dict:
    """Greedy continuation of the bench prompt on both GGUFs with llama.cpp (if installed).

    Expect the same (or nearly the same) text: the F32 file holds exactly the dequantized Q4_1
    weights, but llama.cpp's Q4_1 matmuls also quantize activations to 8 bits, so a near-tie
    can flip."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return {"skipped": "llama_cpp not importable"}
    out = {}
    for name, path in (("q4_1", q4), ("f32", f32)):
        llm = Llama(model_path=path, n_ctx=512, n_threads=2, n_threads_batch=2, verbose=False)
        r = llm.create_completion(PROMPT, max_tokens=steps, temperature=0.0, top_k=1)
        out[name] = r["choices"][0]["text"]
        del llm
    a, b = out["q4_1"], out["f32"]
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    out["common_prefix_chars"] = common
    return out


def ensure_f32_gguf() -> dict | None:
    if os.path.exists(F32_GGUF):
        return None
    if not os.path.exists(Q4_GGUF):
        sys.exit(f"missing {Q4_GGUF} (scripts/fetch_model.sh)")
    t0 = time.perf_counter()
    print(f"[bench] writing {os.path.relpath(F32_GGUF, ROOT)} from the Q4_1 GGUF ...", file=sys.stderr)
    make_f32_gguf(Q4_GGUF, F32_GGUF)
    info = {"created_seconds": round(time.perf_counter() - t0, 1)}
    info["verify"] = verify_f32_gguf(Q4_GGUF, F32_GGUF)
    print(f"[bench] F32 GGUF written in {info['created_seconds']} s; greedy check (llama.cpp): "
          f"{json.dumps(info['verify'], ensure_ascii=False)}", file=sys.stderr)
    return info


# --------------------------------------------------------------------------------------------
# workers (each runs in its own process and prints one JSON object on its last stdout line)
# --------------------------------------------------------------------------------------------

def best(values):
    values = [v for v in values if v]
    return max(values) if values else None


def worker_ponder(a) -> dict:
    os.environ.setdefault("PONDER_LIBRARY", PONDER_LIB_DEFAULT)
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    res: dict = {}
    gen = None
    try:
        if a.ponder_driver == "cli":
            raise ImportError("--ponder-driver cli")
        import ponder  # type: ignore
        t0 = time.perf_counter()
        model = ponder.Model.load(F32_GGUF, threads=a.threads)
        res["load_seconds"] = time.perf_counter() - t0
        res["driver"] = f"python binding ({getattr(ponder, '__file__', '?')}, lib {os.environ['PONDER_LIBRARY']})"

        def gen(max_tokens, temperature=0.0, n=1, seed=0):
            return model.generate(prompt=PROMPT, max_tokens=max_tokens, temperature=temperature, n=n, seed=seed)
    except Exception as e:  # binding missing or broken: fall back to the CLI
        if a.ponder_driver == "binding":
            raise
        res["binding_error"] = f"{type(e).__name__}: {e}"
        if not os.path.exists(PONDER_CLI):
            raise RuntimeError(f"no ponder binding ({res['binding_error']}) and no CLI at {PONDER_CLI}")
        res["driver"] = f"CLI ({PONDER_CLI}; model load excluded by its own timings)"

        def gen(max_tokens, temperature=0.0, n=1, seed=0):
            cmd = [PONDER_CLI, "generate", "--model", F32_GGUF, "--prompt", PROMPT, "--max-tokens", str(max_tokens),
                   "--temperature", repr(float(temperature)), "--n", str(n), "--seed", str(seed),
                   "--threads", str(a.threads), "--json"]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                raise RuntimeError(f"ponder-cli rc={p.returncode}: {p.stderr.strip()[-500:]}")
            return json.loads(p.stdout.strip().splitlines()[-1])

    gen(8)  # warm-up
    pre = [gen(1) for _ in range(3)]
    res["prompt_tokens"] = pre[0]["prompt_tokens"]
    res["prefill_tps"] = best(r["timings"]["prefill_tokens_per_second"] for r in pre)
    res["prefill_runs"] = [r["timings"] for r in pre]

    dec = []
    for _ in range(a.repeats):
        r = gen(a.max_tokens)
        c = r["completions"][0]
        dec.append({"tokens": len(c["token_ids"]), "finish_reason": c["finish_reason"], **r["timings"]})
        res["decode_text"] = c["text"]
        res["decode_ids"] = list(c["token_ids"])
    res["decode_runs"] = dec
    res["decode_tps"] = best(d["tokens"] / d["decode_seconds"] for d in dec if d["decode_seconds"] > 0)
    res["decode_tokens"] = dec[0]["tokens"]

    try:
        grp = []
        for _ in range(a.repeats):
            r = gen(a.max_tokens, temperature=GROUP_TEMPERATURE, n=a.group, seed=GROUP_SEED)
            toks = [len(c["token_ids"]) for c in r["completions"]]
            grp.append({"sequences": len(toks), "tokens": sum(toks), "per_sequence": toks, **r["timings"]})
        res["group_runs"] = grp
        res["group_tps"] = best(g["tokens"] / g["decode_seconds"] for g in grp if g["decode_seconds"] > 0)
        res["group_tokens"] = grp[0]["tokens"]
        res["group_mode"] = f"{a.group} sequences decoded together (n={a.group})"
    except Exception as e:
        res["group_error"] = f"{type(e).__name__}: {e}"
    return res


def worker_llamacpp(a) -> dict:
    """llama.cpp through llama-cpp-python's low-level API (llama_batch / llama_decode), so prefill,
    decode and the grouped decode are timed exactly around llama_decode + sampling; the high-level
    Llama object is only used to load the model and tokenize."""
    import ctypes
    import numpy as np
    import llama_cpp as lc
    from llama_cpp import Llama

    res: dict = {"driver": f"llama-cpp-python {lc.__version__} (llama_batch/llama_decode, CPU)"}
    t0 = time.perf_counter()
    llm = Llama(model_path=F32_GGUF, n_ctx=256, n_threads=a.threads, n_threads_batch=a.threads,
                seed=0, verbose=False)
    res["load_seconds"] = time.perf_counter() - t0
    try:
        res["system_info"] = lc.llama_print_system_info().decode(errors="replace").strip()
    except Exception:
        pass
    prompt = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    P = len(prompt)
    res["prompt_tokens"] = P
    res["prompt_ids"] = prompt
    n_vocab = llm.n_vocab()
    G, N = a.group, a.max_tokens
    rng = np.random.default_rng(GROUP_SEED)

    def new_ctx(n_seq: int):
        cp = lc.llama_context_default_params()
        cp.n_ctx = max(512, 1 << (P + n_seq * N).bit_length())
        cp.n_batch = cp.n_ubatch = 512
        cp.n_seq_max = n_seq
        cp.n_threads = cp.n_threads_batch = a.threads
        cp.kv_unified = True  # all sequences share the prompt's cells (llama.cpp's batched example)
        ctx = lc.llama_init_from_model(llm.model, cp)
        if not ctx:
            raise RuntimeError("llama_init_from_model failed")
        return ctx

    batch = lc.llama_batch_init(max(P, G), 0, G)

    def fill(ctx, rows):
        """rows: [(token, pos, seq, want_logits)] -> llama_decode."""
        for i, (tok, pos, seq, want) in enumerate(rows):
            batch.token[i] = tok
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1 if want else 0
        batch.n_tokens = len(rows)
        rc = lc.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def logits(ctx, i):
        ptr = lc.llama_get_logits_ith(ctx, i)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))

    def prefill(ctx):
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        t = time.perf_counter()
        fill(ctx, [(tok, i, 0, i == P - 1) for i, tok in enumerate(prompt)])
        first = logits(ctx, P - 1).copy()  # the copy waits for the computation to finish
        return time.perf_counter() - t, first

    def sample_rows(z, temperature):
        if temperature == 0:
            return np.argmax(z, axis=-1)
        g = rng.gumbel(size=z.shape)  # Gumbel-max == sampling from softmax(z / T)
        return np.argmax(z.astype(np.float64) / temperature + g, axis=-1)

    def decode(ctx, first, n_seq, temperature):
        """n_seq sequences continue the prefilled prompt (seq 0) for N tokens each, no EOS stop."""
        mem = lc.llama_get_memory(ctx)
        for s in range(1, n_seq):
            lc.llama_memory_seq_cp(mem, 0, s, 0, P)
        t = time.perf_counter()
        z = np.repeat(first[None, :], n_seq, axis=0)
        out = []
        for i in range(N):
            toks = sample_rows(z, temperature)
            out.append(toks)
            if i + 1 < N:
                fill(ctx, [(int(toks[s]), P + i, s, True) for s in range(n_seq)])
                z = np.stack([logits(ctx, s) for s in range(n_seq)])
        dt = time.perf_counter() - t
        return dt, np.stack(out, axis=1)  # (n_seq, N)

    ctx1 = new_ctx(1)
    # warm-up
    _, lg = prefill(ctx1)
    decode(ctx1, lg, 1, 0.0)

    pre = [prefill(ctx1)[0] for _ in range(3)]
    res["prefill_runs_seconds"] = pre
    res["prefill_tps"] = P / min(pre)

    dec = []
    eos = llm.token_eos()
    for _ in range(a.repeats):
        _, lg = prefill(ctx1)
        dt, toks = decode(ctx1, lg, 1, 0.0)
        dec.append({"tokens": int(toks.size), "decode_seconds": dt})
        ids = toks[0].tolist()
        res["decode_ids"] = ids
        res["decode_text"] = llm.detokenize(ids).decode(errors="replace")
        res["decode_eos_at"] = ids.index(eos) if eos in ids else None
    res["decode_runs"] = dec
    res["decode_tps"] = best(d["tokens"] / d["decode_seconds"] for d in dec)
    res["decode_tokens"] = dec[0]["tokens"]

    # group, batched: G sequences share the prompt KV (llama_memory_seq_cp) and decode as one
    # G-row llama_batch per step (what llama.cpp's `batched` example / llama-server slots do).
    ctxg = new_ctx(G)
    _, lg = prefill(ctxg)
    decode(ctxg, lg, G, GROUP_TEMPERATURE)  # warm-up of the G-row path
    grp = []
    for _ in range(a.repeats):
        _, lg = prefill(ctxg)
        dt, toks = decode(ctxg, lg, G, GROUP_TEMPERATURE)
        grp.append({"sequences": G, "tokens": int(toks.size), "decode_seconds": dt})
    res["group_runs"] = grp
    res["group_tps"] = best(g["tokens"] / g["decode_seconds"] for g in grp)
    res["group_tokens"] = grp[0]["tokens"]
    res["group_mode"] = (f"{G} sequences batched via the low-level llama_batch API (shared prompt KV); "
                         "llama-cpp-python's high-level API has no batched sampling")

    # group, sequential: what the high-level API can do -- G batch-1 completions of the prefilled prompt.
    if a.sequential_group:
        _, lg = prefill(ctx1)
        mem = lc.llama_get_memory(ctx1)
        total_t, total_n = 0.0, 0
        for _s in range(G):
            lc.llama_memory_seq_rm(mem, 0, P, -1)
            dt, toks = decode(ctx1, lg, 1, GROUP_TEMPERATURE)
            total_t += dt
            total_n += int(toks.size)
        res["group_sequential"] = {"sequences": G, "tokens": total_n, "decode_seconds": total_t,
                                   "tps": total_n / total_t}
    lc.llama_batch_free(batch)
    lc.llama_free(ctx1)
    lc.llama_free(ctxg)
    res["notes"] = ("wall clock around llama_decode + numpy argmax / Gumbel-max sampling; decode forces "
                    "max_tokens tokens per sequence (no EOS stop)")
    return res


def worker_transformers(a) -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

    torch.set_num_threads(a.threads)
    res: dict = {"driver": f"transformers {transformers.__version__}, torch {torch.__version__}, fp32, "
                           f"{torch.get_num_threads()} threads"}
    d, name = os.path.dirname(F32_GGUF), os.path.basename(F32_GGUF)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    res["load_seconds"] = time.perf_counter() - t0
    if a.prompt_ids:
        ids = json.loads(a.prompt_ids)
        res["prompt_ids_from"] = "llama.cpp tokenizer (same ids as the other engines)"
        tok = None
    else:
        tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
        ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
        res["prompt_ids_from"] = "transformers GGUF tokenizer"
    input_ids = torch.tensor([ids], dtype=torch.long)
    mask = torch.ones_like(input_ids)
    P = input_ids.shape[1]
    res["prompt_tokens"] = P
    eos = model.config.eos_token_id if model.config.eos_token_id is not None else 2

    def forward(batch):
        x = input_ids.repeat(batch, 1)
        with torch.inference_mode():
            t = time.perf_counter()
            model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=True)
            return time.perf_counter() - t

    class FirstStep(LogitsProcessor):
        """Stamps the first logits-processor call: generate()'s prefill forward is done by then."""
        def __init__(self):
            self.t = None

        def __call__(self, input_ids, scores):
            if self.t is None:
                self.t = time.perf_counter()
            return scores

    def generate(**kw):
        """-> (total seconds, decode seconds, new token ids). Decode = from the end of the prompt forward
        (first logits-processor call) to the end: N samplings + N-1 forwards, like the other engines."""
        stamp = FirstStep()
        with torch.inference_mode():
            t = time.perf_counter()
            out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=a.max_tokens,
                                 min_new_tokens=a.max_tokens, pad_token_id=eos,
                                 logits_processor=LogitsProcessorList([stamp]), **kw)
            t_end = time.perf_counter()
            return t_end - t, t_end - stamp.t, out[:, P:]

    # warm-up
    forward(1)
    with torch.inference_mode():
        model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=eos)

    pre = [forward(1) for _ in range(5)]
    res["prefill_runs_seconds"] = pre
    res["prefill_tps"] = P / min(pre)

    dec = []
    for _ in range(a.repeats):
        total, dt, out = generate(do_sample=False)
        n = int(out.shape[1])
        dec.append({"tokens": n, "total_seconds": total, "decode_seconds": dt})
        res["decode_ids"] = out[0].tolist()
        if tok is not None:
            res["decode_text"] = tok.decode(out[0])
    res["decode_runs"] = dec
    res["decode_tps"] = best(d["tokens"] / d["decode_seconds"] for d in dec)
    res["decode_tokens"] = dec[0]["tokens"]

    grp = []
    for _ in range(a.repeats):
        torch.manual_seed(GROUP_SEED)
        total, dt, out = generate(do_sample=True, temperature=GROUP_TEMPERATURE, top_k=0, top_p=1.0,
                              num_return_sequences=a.group)
        n = int(out.numel())
        grp.append({"sequences": int(out.shape[0]), "tokens": n, "total_seconds": total,
                    "decode_seconds": dt, "end_to_end_tps": n / total})
    res["group_runs"] = grp
    res["group_tps"] = best(g["tokens"] / g["decode_seconds"] for g in grp)
    res["group_tokens"] = grp[0]["tokens"]
    res["group_mode"] = f"generate(do_sample=True, num_return_sequences={a.group}) ({a.group}-row batch)"
    res["notes"] = ("decode time = from the first logits-processor call (prompt forward done) to the end of "
                    "generate(); min_new_tokens forces max_tokens tokens (no EOS stop)")
    return res


WORKERS = {"ponder": worker_ponder, "llamacpp": worker_llamacpp, "transformers": worker_transformers}


# --------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------

def run_worker(engine: str, a, prompt_ids=None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", engine, "--threads", str(a.threads),
           "--max-tokens", str(a.max_tokens), "--group", str(a.group), "--repeats", str(a.repeats)]
    if not a.sequential_group:
        cmd.append("--no-sequential-group")
    if engine == "ponder":
        cmd += ["--ponder-driver", a.ponder_driver]
    if prompt_ids:
        cmd += ["--prompt-ids", json.dumps(prompt_ids)]
    t0 = time.perf_counter()
    print(f"[bench] {ENGINE_LABELS[engine]} ...", file=sys.stderr, flush=True)
    s0, r0 = _busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {a.timeout} s"}
    wall = time.perf_counter() - t0
    s1, r1 = _busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time other processes used while this engine ran (machine busy time - our child's CPU time)
    other = None
    if s0 is not None and s1 is not None:
        own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        other = max(0.0, (s1 - s0) - own)
    lines = p.stdout.strip().splitlines()
    try:
        res = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        res = {"error": f"rc={p.returncode}: {(p.stderr or p.stdout).strip()[-1500:]}"}
    res["wall_seconds"] = round(wall, 1)
    if other is not None:
        res["other_processes_cpu_seconds"] = round(other, 1)
        if other > 0.05 * wall * (os.cpu_count() or 1):
            print(f"[bench]   WARNING: other processes used {other:.0f} CPU-seconds while {ENGINE_LABELS[engine]} "
                  f"ran ({wall:.0f} s wall) -- its numbers are likely low", file=sys.stderr)
    if "error" in res:
        print(f"[bench]   {ENGINE_LABELS[engine]} failed: {res['error']}", file=sys.stderr)
    else:
        print(f"[bench]   done in {wall:.1f} s", file=sys.stderr)
    return res


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def ratio(a, b):
    return None if not a or not b else a / b


def greedy_agreement(results: dict) -> dict:
    """Length of the common prefix of each peer's greedy token ids with Ponder's."""
    ref = (results.get("ponder") or {}).get("decode_ids")
    out = {}
    for e in ("llamacpp", "transformers"):
        ids = (results.get(e) or {}).get("decode_ids")
        if ref is None or ids is None:
            continue
        n = 0
        while n < min(len(ref), len(ids)) and ref[n] == ids[n]:
            n += 1
        out[e] = n
    return out


def table(results: dict, a) -> str:
    eng = [e for e in ("ponder", "llamacpp", "transformers")]
    ref = REFERENCE["transformers_reported"]
    get = lambda e, k: (results.get(e) or {}).get(k)
    rows = [
        ("prefill", f"prefill ({get('ponder', 'prompt_tokens') or get('llamacpp', 'prompt_tokens') or '?'}-token prompt)"),
        ("decode", f"decode, batch 1 ({a.max_tokens} tokens, greedy)"),
        ("group", f"group decode ({a.group} x {a.max_tokens}, T={GROUP_TEMPERATURE})"),
    ]
    hdr = ("| tokens/s | Ponder | llama.cpp | transformers | Ponder / llama.cpp | Ponder / transformers "
           "| transformers (reported) | Ponder / transformers (reported) |")
    lines = [hdr, "|" + "---|" * 8]
    for key, label in rows:
        v = {e: get(e, f"{key}_tps") for e in eng}
        cells = [label] + [fmt(v[e]) for e in eng]
        cells += [fmt(ratio(v["ponder"], v["llamacpp"]), 2) + "x" if ratio(v["ponder"], v["llamacpp"]) else "n/a",
                  fmt(ratio(v["ponder"], v["transformers"]), 2) + "x" if ratio(v["ponder"], v["transformers"]) else "n/a",
                  fmt(ref[key]),
                  fmt(ratio(v["ponder"], ref[key]), 2) + "x" if ratio(v["ponder"], ref[key]) else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    lcpp = results.get("llamacpp") or {}
    if "group_mode" in lcpp:
        notes.append(f"llama.cpp group: {lcpp['group_mode']}.")
    if "group_sequential" in lcpp:
        gs = lcpp["group_sequential"]
        notes.append(f"llama.cpp group as {gs['sequences']} sequential batch-1 completions (high-level-API "
                     f"equivalent): {gs['tps']:.1f} tok/s (Ponder / that: "
                     f"{fmt(ratio(results.get('ponder', {}).get('group_tps'), gs['tps']), 2)}x).")
    for e in eng:
        r = results.get(e) or {}
        if "error" in r:
            notes.append(f"{ENGINE_LABELS[e]}: ERROR {r['error'][:300]}")
        elif "group_error" in r:
            notes.append(f"{ENGINE_LABELS[e]} group: ERROR {r['group_error'][:300]}")
        oth, wall = r.get("other_processes_cpu_seconds"), r.get("wall_seconds")
        if oth is not None and wall and oth > 0.05 * wall * (os.cpu_count() or 1):
            notes.append(f"WARNING: other processes used {oth:.0f} CPU-s during the {wall:.0f} s "
                         f"{ENGINE_LABELS[e]} run; its figures are probably depressed -- rerun on an idle machine.")
        if r.get("decode_tokens") is not None and e == "ponder" and r["decode_tokens"] < a.max_tokens:
            notes.append(f"Ponder stopped at EOS after {r['decode_tokens']} tokens in the batch-1 decode "
                         f"(the peers are forced to {a.max_tokens}).")
        if e == "ponder" and r.get("group_tokens") is not None and r["group_tokens"] < a.group * a.max_tokens:
            notes.append(f"Ponder group generated {r['group_tokens']} of {a.group * a.max_tokens} tokens "
                         f"(sequences ending at EOS leave the batch; peers are forced to full length).")
    agree = greedy_agreement(results)
    if agree:
        notes.append("Greedy batch-1 tokens identical to Ponder's for the first: "
                     + ", ".join(f"{ENGINE_LABELS[e]} {n}" for e, n in agree.items()) + " tokens.")
    if results.get("ponder", {}).get("driver"):
        notes.append(f"Ponder driven via {results['ponder']['driver']}.")
    notes.append("Targets: " + REFERENCE["targets"] + ".")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="ponder,llamacpp,transformers")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per decode/group scenario (best kept)")
    ap.add_argument("--timeout", type=int, default=300, help="per-engine timeout, seconds")
    ap.add_argument("--no-sequential-group", dest="sequential_group", action="store_false",
                    help="skip llama.cpp's extra sequential (batch-1) group run")
    ap.add_argument("--ponder-driver", choices=("auto", "binding", "cli"), default="auto",
                    help="auto: the ctypes binding (bindings/python) if importable, else ponder-cli")
    ap.add_argument("--wait-idle", type=int, default=0, metavar="SECONDS",
                    help="first wait up to SECONDS for the CPUs to be idle (<10%% busy for 6 s)")
    ap.add_argument("--out", default=os.path.join(OUT_DIR, "inference.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--prompt-ids", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        try:
            res = WORKERS[a.worker](a)
        except Exception as e:
            import traceback
            traceback.print_exc()
            res = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(res))
        return

    t_start = time.perf_counter()
    f32_info = ensure_f32_gguf()
    if a.wait_idle > 0:
        deadline, calm = time.time() + a.wait_idle, 0
        while time.time() < deadline and calm < 3:
            b = cpu_busy_fraction(2.0)
            calm = calm + 1 if b is not None and b < 0.10 else 0
        if calm < 3:
            print(f"[bench] machine still busy after --wait-idle {a.wait_idle} s; running anyway", file=sys.stderr)
    busy = cpu_busy_fraction()
    if busy is not None and busy > 0.10:
        print(f"[bench] WARNING: the CPUs are {busy:.0%} busy before the bench starts -- something else is "
              "running; the numbers will be low and noisy.", file=sys.stderr)
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    for e in engines:
        if e not in WORKERS:
            sys.exit(f"unknown engine {e!r} (choose from {', '.join(WORKERS)})")
    results: dict = {}
    prompt_ids = None
    # llama.cpp first so transformers can be fed exactly the same prompt token ids
    order = sorted(engines, key=lambda e: {"llamacpp": 0, "ponder": 1, "transformers": 2}[e])
    for e in order:
        results[e] = run_worker(e, a, prompt_ids if e == "transformers" else None)
        if e == "llamacpp" and "prompt_ids" in results[e]:
            prompt_ids = results[e].pop("prompt_ids")

    md = table(results, a)
    print(md)
    report = {
        "model": "SmolLM2-135M-Instruct",
        "gguf": os.path.relpath(F32_GGUF, ROOT),
        "f32_gguf_created": f32_info,
        "prompt": PROMPT,
        "settings": {"threads": a.threads, "max_tokens": a.max_tokens, "group": a.group,
                     "group_temperature": GROUP_TEMPERATURE, "repeats": a.repeats},
        "cpu_busy_before": busy,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu": _cpu_name(), "cores": os.cpu_count(),
                    "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": results,
        "ratios": {k: {"ponder_over_llamacpp": ratio(results.get("ponder", {}).get(f"{k}_tps"),
                                                     results.get("llamacpp", {}).get(f"{k}_tps")),
                       "ponder_over_transformers": ratio(results.get("ponder", {}).get(f"{k}_tps"),
                                                         results.get("transformers", {}).get(f"{k}_tps"))}
                   for k in ("prefill", "decode", "group")},
        "greedy_agreement_with_ponder": greedy_agreement(results),
        "reference": REFERENCE,
        "table_markdown": md,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    print(f"\n[bench] wrote {os.path.relpath(a.out, ROOT)} (total {report['total_seconds']} s)", file=sys.stderr)


def _busy_cpu_seconds() -> float | None:
    """All CPUs' non-idle time so far, seconds (from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    """Fraction of all CPU time spent busy over `seconds` (before any engine starts)."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    try:
        t0, i0 = read()
        time.sleep(seconds)
        t1, i1 = read()
        return 1 - (i1 - i0) / max(1, t1 - t0)
    except (OSError, ValueError, IndexError):
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
