"""The wheel a user installs: scripts/build_wheel.sh's platform wheel, installed into a fresh venv,
loads SmolLM2 and generates with PONDER_LIBRARY unset; the library inside needs no Swift
toolchain (no libswift*/Foundation NEEDED entry, no toolchain RUNPATH)."""
import glob
import json
import os
import subprocess
import sys
import zipfile

from conftest import MODEL
from pipeline_runs import ROOT


def test_wheel_installs_and_generates(tmp_path):
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "build_wheel.sh")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheels = glob.glob(os.path.join(ROOT, "dist", "ponder-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    assert "-py3-none-manylinux_" in os.path.basename(wheel) and wheel.endswith("_x86_64.whl"), wheel
    # The packaged library, as the wheel holds it.
    with zipfile.ZipFile(wheel) as z:
        z.extract("ponder/libponder.so", tmp_path / "unzipped")
    dyn = subprocess.run(["readelf", "-d", str(tmp_path / "unzipped" / "ponder" / "libponder.so")],
                         capture_output=True, text=True, check=True).stdout
    needed = [l for l in dyn.splitlines() if "(NEEDED)" in l]
    assert not [l for l in needed if "swift" in l.lower() or "Foundation" in l or "dispatch" in l], needed
    runpath = [l for l in dyn.splitlines() if "RUNPATH" in l or "RPATH" in l]
    assert runpath and not [l for l in runpath if "/opt/swift" in l or "/usr/lib/swift" in l], runpath

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PONDER_LIBRARY", "PYTHONPATH")}
    script = (
        "import json, sys, ponder\n"
        "assert ponder.__file__.startswith(sys.prefix), ponder.__file__\n"
        f"m = ponder.Model.load({MODEL!r}, threads=2)\n"
        "r = m.generate('What is 2 + 3?', chat=True, max_tokens=8, temperature=0)\n"
        "print(json.dumps({'text': r['completions'][0]['text'], 'lib': ponder.library()._name}))\n")
    out = subprocess.run([py, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["text"] and res["lib"].startswith(str(venv)), res

    # A missing library is named, and is both a PonderError and an OSError.
    env["PONDER_LIBRARY"] = str(tmp_path / "nowhere" / "libponder.so")
    script = ("import ponder\ntry:\n    ponder.library()\nexcept ponder.LibraryNotFound as e:\n"
              "    assert isinstance(e, OSError) and isinstance(e, ponder.PonderError)\n    print(e)\n")
    out = subprocess.run([py, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "nowhere/libponder.so" in out.stdout, out.stdout + out.stderr
