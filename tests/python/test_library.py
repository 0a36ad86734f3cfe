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
