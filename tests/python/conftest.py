import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
os.environ.setdefault("PONDER_LIBRARY", os.path.join(ROOT, ".build", "release", "libponder.so"))


@pytest.fixture(scope="session")
def model():
    import ponder

    if not os.path.exists(MODEL):
        if os.environ.get("PONDER_REQUIRE_MODEL") == "1" or os.environ.get("CI") == "true":
            pytest.fail(f"model missing: {MODEL} (run scripts/fetch_model.sh)")
        pytest.skip("model missing")
    m = ponder.Model.load(MODEL, threads=2)
    yield m
    m.close()
