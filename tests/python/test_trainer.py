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
        ponder.Trainer(config(tmp_path, kind="ppo"))
    assert e.value.status_name == "INVALID_ARGUMENT"
    assert 'kind: unknown trainer kind "ppo"' in e.value.message
    with pytest.raises(ponder.PonderError) as e:
        ponder.Trainer(config(tmp_path, kind="grpo"))  # an SFT config is not a GRPO one
    assert e.value.status_name == "INVALID_ARGUMENT" and "training.batch_size: unknown key" in e.value.message
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


def grpo_config(tmp_path, **reward):
    return {"kind": "grpo",
            "model": {"scratch": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2,
                                  "context_length": 96, "seed": 3}},
            "data": {"train": {"generate": "arithmetic", "count": 16, "seed": 2}},
            "reward": {"custom": ["vowels"], "rewards": ["format", "vowels"], "reward_weights": [1, 1], **reward},
            "training": {"prompts_per_step": 2, "num_generations": 3, "max_completion_length": 16, "max_steps": 2},
            "output": {"dir": str(tmp_path / "grpo")}}


def test_grpo_with_a_python_reward(tmp_path):
    t = ponder.Trainer(grpo_config(tmp_path))
    with pytest.raises(ponder.PonderError) as e:
        t.step()  # declared, not registered yet
    assert e.value.status_name == "MISUSE" and "vowels" in e.value.message
    seen = []

    def vowels(prompt, completion, reference):
        seen.append((prompt, reference))
        return sum(c in "aeiou" for c in completion) if len(completion) % 5 else None

    t.set_reward("vowels", vowels)
    m = t.step()
    assert len(seen) == 6, "one call per completion"
    assert all(p.startswith("What is") and r is not None for p, r in seen)
    assert m["rewards/vowels/mean"] >= 0 and "kl" in m and "reward" in m
    with pytest.raises(ponder.PonderError) as e:
        t.set_reward("other", vowels)
    assert e.value.status_name == "INVALID_ARGUMENT"

    def broken(prompt, completion, reference):
        raise ValueError("environment crashed")

    t.set_reward("vowels", broken)
    with pytest.raises(ValueError, match="environment crashed"):
        t.step()


def test_grpo_min_completion_length(tmp_path):
    """No completion ends before min_completion_length: without it this random model ends some early."""
    lengths = {}
    for minimum in (0, 16):
        cfg = grpo_config(tmp_path / str(minimum), custom=[], rewards=["format"], reward_weights=[1])
        cfg["training"].update(min_completion_length=minimum, prompts_per_step=4, num_generations=4, max_steps=1)
        m = ponder.Trainer(cfg).step()
        lengths[minimum] = (m["completions/min_length"], m["completions/mean_length"])
    assert lengths[16] == (16, 16)
    assert lengths[0][0] < 16, lengths


def test_a_reward_that_reenters_its_trainer_is_refused(tmp_path):
    """ponder_trainer_step from inside the trainer's own reward callback is MISUSE (it ran a
    nested step before); calls the header allows inside a callback still work there."""
    cfg = grpo_config(tmp_path)
    cfg["training"]["max_steps"] = 3
    t = ponder.Trainer(cfg)
    refused, allowed = [], []

    def vowels(prompt, completion, reference):
        for call in (t.step, t.evaluate, lambda: t.save(str(tmp_path / "inside")), lambda: t.register_reward("vowels", vowels)):
            try:
                call()
            except ponder.Misuse as e:
                refused.append(str(e))
        allowed.append(ponder.score([completion], rewards=["format"])[0]["total"] is not None)
        return 0.0

    t.register_reward("vowels", vowels)
    assert t.step()["step"] == 1
    assert len(refused) == 4 * 6 and all("inside another call" in r for r in refused), refused[:2]
    assert allowed and all(allowed)
    assert t.step()["step"] == 2, "the trainer goes on normally after refusing"
