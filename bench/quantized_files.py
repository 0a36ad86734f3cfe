"""SmolLM2 GGUF files in the formats issue 25 measures, made once under models/ (git-ignored):

  Q4_1     the file scripts/fetch_model.sh fetches (its tied embedding is Q8_0)
  F32      every tensor of the Q4_1 file dequantized (gguf-py), the fp32 twin of Q4_1
  Q8_0     llama.cpp's quantize tool (llama-cpp-python's llama_model_quantize) from the F32 file
  Q4_K_M   the same; SmolLM2's 576-wide rows are not a multiple of 256, so llama.cpp falls back
           to Q5_0 (and Q6_K to Q8_0): mostly Q5_0 in practice
"""
from __future__ import annotations

import ctypes
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(ROOT, "models")
NAME = "SmolLM2-135M-Instruct"


def path(kind: str) -> str:
    return os.path.join(MODELS, f"{NAME}.{kind}.gguf")


def ensure(kind: str) -> str:
    """The file for kind (Q4_1, F32, Q8_0, Q4_K_M), made if missing."""
    out = path(kind)
    if os.path.exists(out):
        return out
    if kind == "Q4_1":
        raise FileNotFoundError(f"{out}: run scripts/fetch_model.sh")
    if kind == "F32":
        sys.path.insert(0, HERE)
        from bench_inference import make_f32_gguf
        make_f32_gguf(ensure("Q4_1"), out)
        return out
    import llama_cpp
    ftype = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
             "Q5_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0, "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
             "Q6_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K}[kind]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    tmp = out + ".tmp"
    rc = llama_cpp.llama_model_quantize(ensure("F32").encode(), tmp.encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize to {kind} failed ({rc})")
    os.replace(tmp, out)
    return out


def tensor_types(p: str) -> dict:
    """{ggml type name: tensor count} and the tensors' data bytes, read with gguf-py."""
    import gguf
    r = gguf.GGUFReader(p)
    types: dict = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {"types": types, "tensor_bytes": int(sum(int(t.n_bytes) for t in r.tensors))}
