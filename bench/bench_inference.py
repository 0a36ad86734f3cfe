#!/usr/bin/env python3
"""Inference throughput: Ponder vs llama.cpp (llama-cpp-python) vs transformers, one run, one machine.

  python3 bench/bench_inference.py [--engines ponder,llamacpp,transformers] [--threads 2]
                                   [--max-tokens 128] [--group 8] [--rounds 2] [--wait-idle S]

Model: SmolLM2-135M-Instruct, all three engines on the same F32 GGUF
(models/SmolLM2-135M-Instruct.F32.gguf, created from the Q4_1 GGUF with gguf-py if missing).

Scenarios (prompt: a GSM8K question in SmolLM2's chat template, 128 tokens):
  prefill  tokens/s processing the prompt
  decode   batch 1, --max-tokens greedy tokens; generated tokens / decode time (prefill excluded)
  group    --group completions of the one prompt, temperature 0.8 sampling;
           total generated tokens / decode time (prefill excluded)
Each engine runs in its own child process (no thread-pool interference between engines) and is
warmed up once. The engines run --rounds times, interleaved (llama.cpp, Ponder, transformers,
llama.cpp, ...), and each scenario keeps its best run, so a burst of load from another process
(e.g. a compile) is unlikely to hit the same scenario of one engine in every round. Every timed run
records how much CPU other processes used meanwhile; the table flags figures taken under load.

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

from common import busy_cpu_seconds, cpu_name, machine_info, print_machine
import quantized_files

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(ROOT, "models")
Q4_GGUF = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
F32_GGUF = os.path.join(MODELS, "SmolLM2-135M-Instruct.F32.gguf")
# The file every engine runs: --gguf KIND (F32, Q4_1, Q8_0, Q4_K_M; bench/quantized_files.py).
MODEL = F32_GGUF
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
PREFILL_RUNS = 3  # timed prompt passes per round (cheap)
LOADED = 0.10  # a run is "under load" when other processes used > 10% of the machine's CPU meanwhile

# transformers fp32, 2 threads, on this kind of machine (figures given with the task), and the targets.
REFERENCE = {
    "transformers_reported": {"prefill": 482.0, "decode": 25.0, "group": 96.0},
    "targets": "Ponder decode >= llama.cpp decode (F32 GGUF); Ponder group >= 3x transformers group",
}

ENGINE_LABELS = {"ponder": "Ponder", "llamacpp": "llama.cpp", "transformers": "transformers",
                 "baseline": "Ponder (baseline library)"}
SCENARIOS = ("prefill", "decode", "group")


# --------------------------------------------------------------------------------------------
# CPU accounting (is anything else running?)
# --------------------------------------------------------------------------------------------

def own_cpu_seconds() -> float:
    """CPU time of this process (all threads) and its waited-for children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Meter:
    """with Meter() as m: ...  ->  m.other: fraction of the machine's CPU capacity that *other*
    processes used during the block (None if /proc/stat is unreadable)."""

    def __enter__(self):
        self.b0, self.o0, self.t0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        b1, o1 = busy_cpu_seconds(), own_cpu_seconds()
        if self.b0 is None or b1 is None or wall <= 0:
            self.other = None
        else:
            other = max(0.0, (b1 - self.b0) - (o1 - self.o0))
            self.other = round(min(1.0, other / (wall * (os.cpu_count() or 1))), 3)
        return False


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    b0 = busy_cpu_seconds()
    time.sleep(seconds)
    b1 = busy_cpu_seconds()
    if b0 is None or b1 is None:
        return None
    return (b1 - b0) / (seconds * (os.cpu_count() or 1))


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
# workers: each runs in its own process and prints one JSON object on its last stdout line:
#   {"runs": {"prefill": [run...], "decode": [...], "group": [...]}, ...engine info...}
#   run = {"tokens", "seconds", "tps", "other_cpu", ...}
# --------------------------------------------------------------------------------------------

def run_record(tokens: int, seconds: float, meter: Meter, **extra) -> dict:
    return {"tokens": int(tokens), "seconds": seconds, "tps": tokens / seconds if seconds > 0 else None,
            "other_cpu": meter.other, **extra}


def worker_ponder(a) -> dict:
    os.environ.setdefault("PONDER_LIBRARY", PONDER_LIB_DEFAULT)
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    res: dict = {"runs": {s: [] for s in SCENARIOS}}
    try:
        if a.ponder_driver == "cli":
            raise ImportError("--ponder-driver cli")
        import ponder  # type: ignore
        t0 = time.perf_counter()
        model = ponder.Model.load(MODEL, threads=a.threads)
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
            cmd = [PONDER_CLI, "generate", "--model", MODEL, "--prompt", PROMPT, "--max-tokens", str(max_tokens),
                   "--temperature", repr(float(temperature)), "--n", str(n), "--seed", str(seed),
                   "--threads", str(a.threads), "--json"]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                raise RuntimeError(f"ponder-cli rc={p.returncode}: {p.stderr.strip()[-500:]}")
            return json.loads(p.stdout.strip().splitlines()[-1])

    gen(8)  # warm-up
    for _ in range(PREFILL_RUNS):
        with Meter() as m:
            r = gen(1)
        t = r["timings"]
        res["prompt_tokens"] = r["prompt_tokens"]
        res["runs"]["prefill"].append(run_record(r["prompt_tokens"], t["prefill_seconds"], m))

    for _ in range(a.repeats):
        with Meter() as m:
            r = gen(a.max_tokens)
        c = r["completions"][0]
        res["runs"]["decode"].append(run_record(len(c["token_ids"]), r["timings"]["decode_seconds"], m,
                                                finish_reason=c["finish_reason"]))
        res["decode_text"] = c["text"]
        res["decode_ids"] = list(c["token_ids"])

    try:
        for _ in range(a.repeats):
            with Meter() as m:
                r = gen(a.max_tokens, temperature=GROUP_TEMPERATURE, n=a.group, seed=GROUP_SEED)
            toks = [len(c["token_ids"]) for c in r["completions"]]
            res["runs"]["group"].append(run_record(sum(toks), r["timings"]["decode_seconds"], m,
                                                   sequences=len(toks), per_sequence=toks))
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

    res: dict = {"runs": {s: [] for s in SCENARIOS},
                 "driver": f"llama-cpp-python {lc.__version__} (llama_batch/llama_decode, CPU)"}
    t0 = time.perf_counter()
    llm = Llama(model_path=MODEL, n_ctx=256, n_threads=a.threads, n_threads_batch=a.threads,
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
        first = logits(ctx, P - 1).copy()  # reading the logits waits for the computation to finish
        return time.perf_counter() - t, first

    def sample_rows(z, temperature):
        if temperature == 0:
            return np.argmax(z, axis=-1)
        g = rng.gumbel(size=z.shape)  # Gumbel-max == sampling from softmax(z / T)
        return np.argmax(z.astype(np.float64) / temperature + g, axis=-1)

    def decode(ctx, first, n_seq, temperature):
        """n_seq sequences continue the prefilled prompt (seq 0) for N tokens each (no EOS stop):
        N samplings + N-1 llama_decode calls of n_seq rows."""
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
    _, lg = prefill(ctx1)  # warm-up
    decode(ctx1, lg, 1, 0.0)

    for _ in range(PREFILL_RUNS):
        with Meter() as m:
            dt, _ = prefill(ctx1)
        res["runs"]["prefill"].append(run_record(P, dt, m))

    eos = llm.token_eos()
    for _ in range(a.repeats):
        _, lg = prefill(ctx1)
        with Meter() as m:
            dt, toks = decode(ctx1, lg, 1, 0.0)
        res["runs"]["decode"].append(run_record(toks.size, dt, m))
        ids = toks[0].tolist()
        res["decode_ids"] = ids
        res["decode_text"] = llm.detokenize(ids).decode(errors="replace")
        res["decode_eos_at"] = ids.index(eos) if eos in ids else None

    # group, batched: G sequences share the prompt KV (llama_memory_seq_cp) and decode as one
    # G-row llama_batch per step (what llama.cpp's `batched` example / llama-server slots do).
    ctxg = new_ctx(G)
    _, lg = prefill(ctxg)
    decode(ctxg, lg, G, GROUP_TEMPERATURE)  # warm-up of the G-row path
    for _ in range(a.repeats):
        _, lg = prefill(ctxg)
        with Meter() as m:
            dt, toks = decode(ctxg, lg, G, GROUP_TEMPERATURE)
        res["runs"]["group"].append(run_record(toks.size, dt, m, sequences=G))
    res["group_mode"] = (f"{G} sequences batched via the low-level llama_batch API (shared prompt KV); "
                         "llama-cpp-python's high-level API has no batched sampling")

    # group, sequential: what the high-level API can do -- G batch-1 completions of the prefilled prompt.
    if a.sequential_group:
        _, lg = prefill(ctx1)
        mem = lc.llama_get_memory(ctx1)
        total_t, total_n = 0.0, 0
        with Meter() as m:
            for _s in range(G):
                lc.llama_memory_seq_rm(mem, 0, P, -1)
                dt, toks = decode(ctx1, lg, 1, GROUP_TEMPERATURE)
                total_t += dt
                total_n += int(toks.size)
        res["group_sequential"] = run_record(total_n, total_t, m, sequences=G)
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
    res: dict = {"runs": {s: [] for s in SCENARIOS},
                 "driver": f"transformers {transformers.__version__}, torch {torch.__version__}, fp32, "
                           f"{torch.get_num_threads()} threads"}
    d, name = os.path.dirname(MODEL), os.path.basename(MODEL)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    res["load_seconds"] = time.perf_counter() - t0
    tok = None
    if a.prompt_ids:
        ids = json.loads(a.prompt_ids)
        res["prompt_ids_from"] = "llama.cpp tokenizer (same ids as the other engines)"
    else:
        tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
        ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
        res["prompt_ids_from"] = "transformers GGUF tokenizer"
    input_ids = torch.tensor([ids], dtype=torch.long)
    mask = torch.ones_like(input_ids)
    P = input_ids.shape[1]
    res["prompt_tokens"] = P
    eos = model.config.eos_token_id if model.config.eos_token_id is not None else 2

    def forward():
        with torch.inference_mode():
            t = time.perf_counter()
            model(input_ids=input_ids, attention_mask=mask, use_cache=True)
            return time.perf_counter() - t

    class FirstStep(LogitsProcessor):
        """Stamps the first logits-processor call: generate()'s prompt forward is done by then."""
        def __init__(self):
            self.t = None

        def __call__(self, input_ids, scores):
            if self.t is None:
                self.t = time.perf_counter()
            return scores

    def generate(max_new, **kw):
        """-> (decode seconds, new token ids). Decode = from the end of the prompt forward (first
        logits-processor call) to the end: N samplings + N-1 forwards, like the other engines."""
        stamp = FirstStep()
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new,
                                 min_new_tokens=max_new, pad_token_id=eos,
                                 logits_processor=LogitsProcessorList([stamp]), **kw)
            return time.perf_counter() - stamp.t, out[:, P:]

    forward()  # warm-up
    generate(8, do_sample=False)
    generate(8, do_sample=True, temperature=GROUP_TEMPERATURE, top_k=0, top_p=1.0, num_return_sequences=a.group)

    for _ in range(PREFILL_RUNS):
        with Meter() as m:
            dt = forward()
        res["runs"]["prefill"].append(run_record(P, dt, m))

    for _ in range(a.repeats):
        with Meter() as m:
            dt, out = generate(a.max_tokens, do_sample=False)
        res["runs"]["decode"].append(run_record(out.shape[1], dt, m))
        res["decode_ids"] = out[0].tolist()
        if tok is not None:
            res["decode_text"] = tok.decode(out[0])

    for _ in range(a.repeats):
        torch.manual_seed(GROUP_SEED)
        with Meter() as m:
            dt, out = generate(a.max_tokens, do_sample=True, temperature=GROUP_TEMPERATURE, top_k=0, top_p=1.0,
                               num_return_sequences=a.group)
        res["runs"]["group"].append(run_record(out.numel(), dt, m, sequences=int(out.shape[0])))
    res["group_mode"] = f"generate(do_sample=True, num_return_sequences={a.group}) ({a.group}-row batch)"
    res["notes"] = ("decode time = from the first logits-processor call (prompt forward done) to the end of "
                    "generate(); min_new_tokens forces max_tokens tokens (no EOS stop)")
    return res


WORKERS = {"ponder": worker_ponder, "llamacpp": worker_llamacpp, "transformers": worker_transformers,
           "baseline": worker_ponder}


# --------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------

def run_worker(engine: str, a, rnd: int, prompt_ids=None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", engine, "--gguf", a.gguf, "--threads", str(a.threads),
           "--max-tokens", str(a.max_tokens), "--group", str(a.group), "--repeats", str(a.repeats)]
    if not a.sequential_group or rnd > 0:  # the sequential llama.cpp group runs in round 1 only
        cmd.append("--no-sequential-group")
    env = None
    if engine in ("ponder", "baseline"):
        cmd += ["--ponder-driver", a.ponder_driver]
    if engine == "baseline":
        # Another build of libponder.so (an earlier commit), timed in the same run: "not slower
        # than before" is a ratio taken on one machine state, not across days.
        env = dict(os.environ, PONDER_LIBRARY=a.baseline)
    if prompt_ids:
        cmd += ["--prompt-ids", json.dumps(prompt_ids)]
    print(f"[bench] round {rnd + 1}/{a.rounds}: {ENGINE_LABELS[engine]} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        with Meter() as m:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {a.timeout} s"}
    wall = time.perf_counter() - t0
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        res = {"error": f"rc={p.returncode}: {(p.stderr or p.stdout).strip()[-1500:]}"}
    res["wall_seconds"] = round(wall, 1)
    res["other_cpu"] = m.other
    msg = f"done in {wall:.1f} s" if "error" not in res else f"FAILED: {res['error']}"
    if m.other is not None and m.other > LOADED:
        msg += f" (other processes used {m.other:.0%} of the CPUs meanwhile)"
    print(f"[bench]   {msg}", file=sys.stderr, flush=True)
    return res


def merge(rounds: list[dict]) -> dict:
    """One engine's rounds -> summary: every run, and per scenario the best run."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return {"error": rounds[-1].get("error", "no result") if rounds else "not run"}
    out = {k: v for k, v in ok[-1].items() if k not in ("runs", "wall_seconds", "other_cpu")}
    out["rounds"] = [{"wall_seconds": r.get("wall_seconds"), "other_cpu": r.get("other_cpu"),
                      **({"error": r["error"]} if "error" in r else {})} for r in rounds]
    for r in ok:  # keep the first round's extras where the last lacks them
        for k in ("group_sequential", "prompt_ids", "load_seconds"):
            if k in r and k not in out:
                out[k] = r[k]
    out["runs"] = {s: [run for r in ok for run in r.get("runs", {}).get(s, [])] for s in SCENARIOS}
    for s in SCENARIOS:
        runs = [x for x in out["runs"][s] if x.get("tps")]
        if runs:
            b = max(runs, key=lambda x: x["tps"])
            out[f"{s}_tps"] = b["tps"]
            out[f"{s}_tokens"] = b["tokens"]
            out[f"{s}_other_cpu"] = b.get("other_cpu")
    return out


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def ratio(a, b):
    return None if not a or not b else a / b


def fmt_ratio(a, b):
    r = ratio(a, b)
    return "n/a" if r is None else f"{r:.2f}x"


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
    eng = ("ponder", "llamacpp", "transformers")
    ref = REFERENCE["transformers_reported"]
    get = lambda e, k: (results.get(e) or {}).get(k)
    prompt_tokens = get("ponder", "prompt_tokens") or get("llamacpp", "prompt_tokens") or "?"
    labels = {
        "prefill": f"prefill ({prompt_tokens}-token prompt)",
        "decode": f"decode, batch 1 ({a.max_tokens} tokens, greedy)",
        "group": f"group decode ({a.group} x {a.max_tokens}, T={GROUP_TEMPERATURE})",
    }
    lines = ["| tokens/s | Ponder | llama.cpp | transformers | Ponder / llama.cpp | Ponder / transformers "
             "| transformers (reported) | Ponder / transformers (reported) |", "|" + "---|" * 8]
    loaded = []
    for s in SCENARIOS:
        v = {e: get(e, f"{s}_tps") for e in eng}
        cells = []
        for e in eng:
            c = fmt(v[e])
            o = get(e, f"{s}_other_cpu")
            if o is not None and o > LOADED:
                c += " *"
                loaded.append(f"{ENGINE_LABELS[e]} {s} ({o:.0%})")
            cells.append(c)
        lines.append("| " + " | ".join([labels[s]] + cells + [
            fmt_ratio(v["ponder"], v["llamacpp"]), fmt_ratio(v["ponder"], v["transformers"]),
            fmt(ref[s]), fmt_ratio(v["ponder"], ref[s])]) + " |")

    notes = []
    if loaded:
        notes.append("\\* measured while other processes used more than 10% of the CPUs (share in parentheses): "
                     + ", ".join(loaded) + " -- probably too low; rerun on an idle machine.")
    lcpp = results.get("llamacpp") or {}
    if "group_mode" in lcpp:
        notes.append(f"llama.cpp group: {lcpp['group_mode']}.")
    gs = lcpp.get("group_sequential")
    if gs and gs.get("tps"):
        notes.append(f"llama.cpp group as {gs['sequences']} sequential batch-1 completions (the high-level-API "
                     f"equivalent): {gs['tps']:.1f} tok/s (Ponder / that: "
                     f"{fmt_ratio(get('ponder', 'group_tps'), gs['tps'])}"
                     + (f"; measured under {gs['other_cpu']:.0%} other load" if (gs.get("other_cpu") or 0) > LOADED
                        else "") + ").")
    for e in eng:
        r = results.get(e) or {}
        if "error" in r:
            notes.append(f"{ENGINE_LABELS[e]}: ERROR {r['error'][:300]}")
        elif "group_error" in r:
            notes.append(f"{ENGINE_LABELS[e]} group: ERROR {r['group_error'][:300]}")
    p = results.get("ponder") or {}
    if p.get("decode_tokens") is not None and p["decode_tokens"] < a.max_tokens:
        notes.append(f"Ponder stopped at EOS after {p['decode_tokens']} tokens in the batch-1 decode "
                     f"(the peers are forced to {a.max_tokens}).")
    if p.get("group_tokens") is not None and p["group_tokens"] < a.group * a.max_tokens:
        notes.append(f"Ponder's group generated {p['group_tokens']} of {a.group * a.max_tokens} tokens "
                     f"(sequences ending at EOS leave the batch; the peers are forced to full length).")
    agree = greedy_agreement(results)
    if agree:
        notes.append("Greedy batch-1 tokens identical to Ponder's for the first: "
                     + ", ".join(f"{ENGINE_LABELS[e]} {n}" for e, n in agree.items()) + " tokens.")
    if p.get("driver"):
        notes.append(f"Ponder driven via {p['driver']}.")
    notes.append(f"Best of {a.rounds} interleaved rounds x {a.repeats} runs per decode scenario "
                 f"({a.rounds} x {PREFILL_RUNS} for prefill), {a.threads} threads everywhere.")
    notes.append("Targets: " + REFERENCE["targets"] + ".")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def baseline_table(results: dict, a) -> str:
    """This build against --baseline's library, the same scenarios, best runs of the same rounds."""
    get = lambda e, k: (results.get(e) or {}).get(k)
    lines = [f"| tokens/s | Ponder | baseline ({a.baseline}) | Ponder / baseline |", "|---|---|---|---|"]
    for s in SCENARIOS:
        v, b = get("ponder", f"{s}_tps"), get("baseline", f"{s}_tps")
        lines.append(f"| {s} | {fmt(v)} | {fmt(b)} | {fmt_ratio(v, b)} |")
    same = get("ponder", "decode_ids") is not None and get("ponder", "decode_ids") == get("baseline", "decode_ids")
    return "\n".join(lines) + f"\n\n- Greedy batch-1 token ids identical to the baseline's: {same}."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="ponder,llamacpp,transformers")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the engines (best run kept)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per decode scenario per round")
    ap.add_argument("--timeout", type=int, default=300, help="per-engine, per-round timeout, seconds")
    ap.add_argument("--no-sequential-group", dest="sequential_group", action="store_false",
                    help="skip llama.cpp's extra sequential (batch-1) group run")
    ap.add_argument("--ponder-driver", choices=("auto", "binding", "cli"), default="auto",
                    help="auto: the ctypes binding (bindings/python) if importable, else ponder-cli")
    ap.add_argument("--wait-idle", type=int, default=0, metavar="SECONDS",
                    help="first wait up to SECONDS for the CPUs to be idle (<10%% busy for 6 s)")
    ap.add_argument("--baseline", metavar="LIB", help="also time Ponder with this libponder.so (e.g. an earlier "
                    "commit's build), interleaved; the table adds Ponder / baseline")
    ap.add_argument("--out", default=os.path.join(OUT_DIR, "inference.json"))
    ap.add_argument("--gguf", default="F32", help="the file all engines run: F32, Q4_1, Q8_0 or Q4_K_M "
                    "(made under models/ if missing; bench/quantized_files.py)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--prompt-ids", help=argparse.SUPPRESS)
    a = ap.parse_args()
    global MODEL
    MODEL = F32_GGUF if a.gguf == "F32" else quantized_files.ensure(a.gguf)

    if a.worker:
        try:
            res = WORKERS[a.worker](a)
        except Exception as e:
            import traceback
            traceback.print_exc()
            res = {"error": f"{type(e).__name__}: {e}"}
        # Peak resident memory of the whole worker (model, caches, engine), in MiB.
        res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return

    t_start = time.perf_counter()
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    if a.baseline:
        engines.append("baseline")
    for e in engines:
        if e not in WORKERS:
            sys.exit(f"unknown engine {e!r} (choose from {', '.join(WORKERS)})")
    f32_info = ensure_f32_gguf()
    if a.wait_idle > 0:
        deadline, calm = time.time() + a.wait_idle, 0
        while time.time() < deadline and calm < 3:
            b = cpu_busy_fraction(2.0)
            calm = calm + 1 if b is not None and b < 0.10 else 0
        if calm < 3:
            print(f"[bench] machine still busy after --wait-idle {a.wait_idle} s; running anyway", file=sys.stderr)
    busy = cpu_busy_fraction()
    if busy is not None and busy > LOADED:
        print(f"[bench] WARNING: the CPUs are {busy:.0%} busy before the bench starts -- something else is "
              "running; figures taken under load are flagged with *.", file=sys.stderr)

    # llama.cpp first so transformers can be fed exactly the same prompt token ids
    order = sorted(engines, key=lambda e: {"llamacpp": 0, "ponder": 1, "baseline": 2, "transformers": 3}[e])
    per_engine: dict = {e: [] for e in order}
    prompt_ids = None
    for rnd in range(a.rounds):
        for e in order:
            r = run_worker(e, a, rnd, prompt_ids if e == "transformers" else None)
            per_engine[e].append(r)
            if e == "llamacpp" and r.get("prompt_ids"):
                prompt_ids = r["prompt_ids"]
    results = {e: merge(rs) for e, rs in per_engine.items()}
    for r in results.values():
        r.pop("prompt_ids", None)

    md = table(results, a)
    if a.baseline:
        md += "\n\n" + baseline_table(results, a)
    # Weight bandwidth: every decode step reads the file's tensors once (the KV cache is small here).
    tensors = quantized_files.tensor_types(MODEL)
    gb = tensors["tensor_bytes"] / 1e9
    extra = ["", f"File: {os.path.basename(MODEL)}, tensors {tensors['types']}, {gb * 1e3:.1f} MB of tensor data.", "",
             "| | peak RSS (MiB) | decode weight GB/s | group weight GB/s |", "|---|---|---|---|"]
    for e in [x for x in ("ponder", "llamacpp", "transformers") if x in results]:
        r = results[e]
        bw = lambda k, per: fmt(r[k] / per * gb) if r.get(k) else "n/a"
        r["weight_gbps"] = {"decode": r.get("decode_tps") and r["decode_tps"] * gb,
                            "group": r.get("group_tps") and r["group_tps"] / a.group * gb}
        extra.append(f"| {ENGINE_LABELS[e]} | {fmt(r.get('peak_rss_mib'), 0)} | {bw('decode_tps', 1)} | {bw('group_tps', a.group)} |")
    md += "\n".join(extra)
    machine = machine_info(PONDER_LIB_DEFAULT, torch_config=False)
    print_machine(machine)
    print(md)
    report = {
        "model": "SmolLM2-135M-Instruct",
        "gguf": os.path.relpath(MODEL, ROOT),
        "gguf_tensors": tensors,
        "machine_info": machine,
        "f32_gguf_created": f32_info,
        "prompt": PROMPT,
        "settings": {"threads": a.threads, "max_tokens": a.max_tokens, "group": a.group,
                     "group_temperature": GROUP_TEMPERATURE, "rounds": a.rounds, "repeats": a.repeats,
                     "prefill_runs_per_round": PREFILL_RUNS},
        "cpu_busy_before": busy,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu": cpu_name(), "cores": os.cpu_count(),
                    "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": results,
        "ratios": {s: {"ponder_over_llamacpp": ratio(results.get("ponder", {}).get(f"{s}_tps"),
                                                     results.get("llamacpp", {}).get(f"{s}_tps")),
                       "ponder_over_transformers": ratio(results.get("ponder", {}).get(f"{s}_tps"),
                                                         results.get("transformers", {}).get(f"{s}_tps"))}
                   for s in SCENARIOS},
        "greedy_agreement_with_ponder": greedy_agreement(results),
        "reference": REFERENCE,
        "table_markdown": md,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    print(f"\n[bench] wrote {os.path.relpath(a.out, ROOT)} (total {report['total_seconds']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
