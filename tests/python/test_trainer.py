"""The trainer handle through the C ABI: the "kind" a config names, and a callback that returns
false (PONDER_ERR_CANCELLED, the steps done saved, a second run continues)."""
import os

import pytest

import ponder


def config(tmp_path, **extra):
    return {"model": {"scratch": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2,
                                  "context_length": 96, "seed": 3}},
            "data": {"train": {"generate": "arithmetic", "count": 16, "seed": 2}, "max_length": 64},
            "training": {"batch_size": 2, "max_steps": 4, "learning_rate": 1e-3},
            "output": {"dir": str(tmp_path / "run")}, **extra}


def test_kind_selects_the_trainer(tmp_path):
    with pytest.raises(ponder.PonderError) as e:
        ponder.Trainer(config(tmp_path, kind="grpo"))
    assert e.value.status_name == "INVALID_ARGUMENT"
    assert 'kind: unknown trainer kind "grpo"' in e.value.message
    with pytest.raises(ponder.PonderError) as e:
        ponder.Trainer(config(tmp_path, kind=1))
    assert e.value.status_name == "INVALID_ARGUMENT" and "kind" in e.value.message
    t = ponder.Trainer(config(tmp_path, kind="sft"))
    assert t.step()["step"] == 1


def test_callback_false_cancels_and_the_run_continues(tmp_path):
    t = ponder.Trainer(config(tmp_path))
    seen = []

    def on_step(m):
        seen.append(m["step"])
        return m["step"] < 2

    with pytest.raises(ponder.PonderError) as e:
        t.run(on_step=on_step)
    assert e.value.status_name == "CANCELLED"
    assert seen == [1, 2]
    assert os.path.exists(tmp_path / "run" / "checkpoint-2" / "trainer_state.json")
    summary = t.run()
    assert summary["global_step"] == 4 and summary["checkpoint"].endswith("checkpoint-4")
