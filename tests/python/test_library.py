"""What the built library links against (docs/ARCHITECTURE.md: no Foundation in the library)."""
import os
import subprocess


def needed(path):
    out = subprocess.run(["readelf", "-d", path], check=True, capture_output=True, text=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def test_library_links_no_foundation():
    libs = needed(os.environ["PONDER_LIBRARY"])
    assert "libopenblas.so.0" in libs and "libjson-c.so.5" in libs, libs
    assert not [l for l in libs if "Foundation" in l or "dispatch" in l], libs


def test_a_cpu_without_the_compiled_features_gets_a_named_error():
    """On a CPU without AVX2 every call fails with UNSUPPORTED naming what is missing, and the
    CLI says so (exit 1), rather than dying of SIGILL. PONDER_TEST_PRETEND_MISSING_CPU_FEATURE
    makes the check see a feature as missing on any CPU."""
    import sys
    from conftest import MODEL
    from pipeline_runs import CLI
    env = dict(os.environ, PONDER_TEST_PRETEND_MISSING_CPU_FEATURE="avx2")
    script = ("import ponder, sys\ntry:\n    ponder.Model.load(sys.argv[1])\nexcept ponder.Unsupported as e:\n"
              "    print(e.status, e.message)\n")
    r = subprocess.run([sys.executable, "-c", script, MODEL], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("5 this CPU lacks avx2"), r.stdout + r.stderr
    r = subprocess.run([CLI, "tokenize", "--model", MODEL, "--text", "hi"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "this CPU lacks avx2" in r.stderr, r.stderr
    # Without the pretence this CPU has what the build needs.
    assert subprocess.run([CLI, "version"], capture_output=True, timeout=60).returncode == 0
