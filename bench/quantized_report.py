#!/usr/bin/env python3
"""Collects issue 25's runs (bench/out/inference-*.json from bench_inference.py --gguf, and
bench/out/lora_blocks.json) into bench/results-quantized.json and prints the markdown of
bench/RESULTS.md's "Quantized weights" section from it.

  python3 bench/quantized_report.py            # collect, then print
  python3 bench/quantized_report.py --print    # print from the committed results-quantized.json
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
RESULT = os.path.join(HERE, "results-quantized.json")
RUNS = [("Q4_1", "inference-Q4_1.json", "AVX-512 VNNI kernels"), ("Q8_0", "inference-Q8_0.json", "AVX-512 VNNI kernels"),
        ("Q4_K_M", "inference-Q4_K_M.json", "AVX-512 VNNI kernels"), ("F32", "inference-F32.json", "fp32 kernels"),
        ("Q4_1", "inference-Q4_1-avx2.json", "AVX2 kernels (PONDER_NO_AVX512=1)"),
        ("Q4_1", "inference-Q4_1-g16.json", "AVX-512 VNNI kernels, group of 16 (vote@16's decode)")]


def collect() -> dict:
    rows = []
    for kind, name, kernels in RUNS:
        with open(os.path.join(OUT, name)) as f:
            d = json.load(f)
        r = d["results"]
        row = {"file": kind, "kernels": kernels, "group": d["settings"]["group"], "tensors": d.get("gguf_tensors"),
               "cpu": d["machine"]["cpu"], "flags": {k: d["machine_info"].get(k) for k in ("avx2", "avx512f", "avx512_vnni")},
               "openblas_coretype": d["machine"].get("OPENBLAS_CORETYPE"), "date": d["date"]}
        for e in ("ponder", "llamacpp"):
            row[e] = {k: r[e].get(k) for k in ("prefill_tps", "decode_tps", "group_tps", "peak_rss_mib", "weight_gbps")}
        rows.append(row)
    with open(os.path.join(OUT, "lora_blocks.json")) as f:
        lora = json.load(f)
    out = {"inference": rows, "lora_grpo": {"settings": lora["settings"], "results": lora["results"],
                                            "cpu": lora["machine"]["cpu"], "date": lora["date"]}}
    with open(RESULT, "w") as f:
        json.dump(out, f, indent=1)
    return out


def markdown(d: dict) -> str:
    f = lambda x, n=1: "n/a" if x is None else f"{x:,.{n}f}"
    lines = ["| file (Ponder kernels) | tensor MB | prefill P / L | decode P / L | group P / L (G) | "
             "decode GB/s P / L | peak RSS MiB P / L |", "|---|---|---|---|---|---|---|"]
    for r in d["inference"]:
        p, l = r["ponder"], r["llamacpp"]
        ratio = lambda k: f"{p[k] / l[k]:.2f}×" if p.get(k) and l.get(k) else "n/a"
        mb = r["tensors"]["tensor_bytes"] / 1e6 if r.get("tensors") else None
        lines.append(f"| {r['file']} ({r['kernels']}) | {f(mb, 0)} | {f(p['prefill_tps'], 0)} / {f(l['prefill_tps'], 0)} "
                     f"= {ratio('prefill_tps')} | {f(p['decode_tps'], 0)} / {f(l['decode_tps'], 0)} = {ratio('decode_tps')} | "
                     f"{f(p['group_tps'], 0)} / {f(l['group_tps'], 0)} = {ratio('group_tps')} ({r['group']}) | "
                     f"{f(p['weight_gbps']['decode'])} / {f(l['weight_gbps']['decode'])} | "
                     f"{f(p['peak_rss_mib'], 0)} / {f(l['peak_rss_mib'], 0)} |")
    c = d["inference"][0]
    lines += ["", f"CPU: {c['cpu']}, flags {c['flags']}, OPENBLAS_CORETYPE={c['openblas_coretype']}; {c['date']}. "
              "P = Ponder, L = llama.cpp (llama-cpp-python, same file, 2 threads); tokens/s, best of 2 interleaved rounds."]
    g = d["lora_grpo"]
    q, fl = g["results"]["Q4_1"], g["results"]["F32"]
    s = g["settings"]
    lines += ["", f"LoRA GRPO step (r 16, all seven projections; 1 prompt × {s['generations']} × {s['tokens']} tokens, "
              f"beta 0.04), same run, {g['cpu']}:", "",
              "| | Q4_1 blocks | F32 (its expansion) | ratio |", "|---|---|---|---|"]
    for k, label in (("step_seconds", "step (s)"), ("rollout_seconds", "rollout (s)"), ("reference_seconds", "reference (s)"),
                     ("update_seconds", "update (s)"), ("peak_rss_mib", "peak RSS (MiB)")):
        if q.get(k) is not None and fl.get(k):
            lines.append(f"| {label} | {q[k]:.2f} | {fl[k]:.2f} | {q[k] / fl[k]:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    data = json.load(open(RESULT)) if "--print" in sys.argv else collect()
    print(markdown(data))
