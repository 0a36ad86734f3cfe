"""Helpers shared by the bench scripts: process accounting, the idle wait, and the machine's
description (CPU, SIMD flags, which BLAS each engine runs on) printed at the top of a run."""
from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time


def proc_status_kib(field: str) -> int | None:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM, ...)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0: echo 5 > /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def busy_cpu_seconds() -> float | None:
    """All CPUs' non-idle time since boot, seconds (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def wait_idle(max_wait: float, threshold: float = 0.6, poll: float = 20.0) -> dict:
    """Polls the 1-minute load average until it is < threshold (at most max_wait seconds)."""
    t0 = time.time()
    samples = []
    while True:
        load1 = os.getloadavg()[0]
        samples.append(round(load1, 2))
        if load1 < threshold:
            return {"idle": True, "waited_s": round(time.time() - t0, 1), "load1": load1, "samples": samples}
        if time.time() - t0 + poll > max_wait:
            return {"idle": False, "waited_s": round(time.time() - t0, 1), "load1": load1, "samples": samples}
        print(f"[bench] 1-min load {load1:.2f} >= {threshold}; waiting ({time.time() - t0:.0f}s so far)",
              file=sys.stderr, flush=True)
        time.sleep(poll)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def openblas_of(library: str | None) -> dict:
    """The OpenBLAS that `library` (e.g. libponder.so) links: its path, build configuration and the
    core kernels it picked at load time in this environment (OPENBLAS_CORETYPE decides them)."""
    if not library or not os.path.exists(library):
        return {}
    try:
        ldd = subprocess.run(["ldd", library], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    m = re.search(r"(libopenblas\S*)\s+=>\s+(\S+)", ldd)
    if not m:
        return {}
    out = {"path": m.group(2)}
    try:
        lib = ctypes.CDLL(m.group(2))
        for name in ("openblas_get_config", "openblas_get_corename"):
            fn = getattr(lib, name)
            fn.restype = ctypes.c_char_p
            out[name[len("openblas_get_"):]] = fn().decode().strip()
    except (OSError, AttributeError):
        pass
    return out


def machine_info(ponder_library: str | None = None, torch_config: bool = True) -> dict:
    """CPU, SIMD flags, load, OpenBLAS environment, and the BLAS of Ponder, numpy and torch."""
    flags = cpu_flags()
    info = {
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(),
        "avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "avx512_vnni": "avx512_vnni" in flags,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                                "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "ponder_openblas": openblas_of(ponder_library),
    }
    try:
        import numpy as np

        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        info["numpy"] = {"version": np.__version__, "blas": blas.get("name"),
                         "blas_config": blas.get("openblas configuration") or blas.get("version")}
    except Exception as e:  # numpy absent or its config layout changed: say so, don't fail the bench
        info["numpy"] = {"error": f"{type(e).__name__}: {e}"}
    if torch_config:
        try:
            import torch

            cfg = torch.__config__.show()
            settings = re.search(r"BLAS_INFO=(\w+)", cfg)
            cap = re.search(r"CPU capability usage: (\w+)", cfg)
            info["torch"] = {"version": torch.__version__, "blas": settings.group(1) if settings else None,
                             "cpu_capability": cap.group(1) if cap else None}
        except Exception as e:
            info["torch"] = {"error": f"{type(e).__name__}: {e}"}
    return info


def print_machine(info: dict, file=sys.stderr) -> None:
    simd = "AVX-512F" if info["avx512f"] else ("AVX2, no AVX-512F" if info["avx2"] else "no AVX2")
    if info.get("avx512_vnni"):
        simd += " + VNNI"
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items() if v is not None) or "none set"
    ob = info.get("ponder_openblas") or {}
    lines = [
        f"CPU: {info['cpu']} ({info['cpu_count']} CPUs, {simd}); load average {info['load_average']}",
        f"BLAS environment: {env}",
        f"Ponder's OpenBLAS: {ob.get('path', '?')}: {ob.get('config', '?')}; kernels: {ob.get('corename', '?')}",
        f"numpy {json.dumps(info.get('numpy'))}",
    ]
    if "torch" in info:
        lines.append(f"torch {json.dumps(info['torch'])}")
    for line in lines:
        print("[machine] " + line, file=file, flush=True)
