import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
os.environ.setdefault("PONDER_LIBRARY", os.path.join(ROOT, ".build", "release", "libponder.so"))


def require_model():
    """SmolLM2's Q4_1 GGUF or the test stops: a failure in CI, a skip elsewhere."""
    if not os.path.exists(MODEL):
        if os.environ.get("PONDER_REQUIRE_MODEL") == "1" or os.environ.get("CI") == "true":
            pytest.fail(f"model missing: {MODEL} (run scripts/fetch_model.sh)")
        pytest.skip("model missing (scripts/fetch_model.sh)")


@pytest.fixture(scope="session")
def model():
    import ponder

    require_model()
    m = ponder.Model.load(MODEL, threads=2)
    yield m
    m.close()
