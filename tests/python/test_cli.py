"""The CLI a user learns from itself: --help on every command, the README's CLI section equal to
the command table, usage on a wrong flag, errors that name the flag typed, and default lengths
that fit a model whose context is shorter than them."""
import json
import os
import re
import subprocess

import pytest

from pipeline_runs import CLI, ROOT


def run(*args, cli=CLI, **kw):
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=300, **kw)


def commands():
    out = run("--help").stdout
    return re.findall(r"^  ([a-z][a-z-]*)  ", out, re.M)


def test_every_command_answers_help():
    names = commands()
    assert {"generate", "infer", "eval", "run", "validate", "resume", "score", "sft", "grpo", "convert"} <= set(names)
    for args in (["--help"], ["-h"], ["help"]):
        r = run(*args)
        assert r.returncode == 0 and r.stdout.startswith("usage:"), (args, r.stderr)
    for name in names:
        for flag in ("--help", "-h"):
            r = run(name, flag)
            assert r.returncode == 0, (name, r.stderr)
            assert r.stdout.startswith(f"usage: ponder-cli {name}"), r.stdout[:200]
        assert run("help", name).stdout == run(name, "--help").stdout
    v = run("--version")
    assert v.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+\n", v.stdout)


def test_readme_cli_section_is_the_command_table():
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = re.search(r"<!-- cli:begin -->\n(.*?)<!-- cli:end -->", readme, re.S)
    assert section, "README.md lacks the <!-- cli:begin --> ... <!-- cli:end --> section"
    assert section.group(1) == run("help", "--markdown").stdout, \
        "README's CLI section differs from `ponder-cli help --markdown`: paste its output between the markers"


def test_usage_on_a_wrong_flag_or_command():
    r = run("generate", "--max-token", "3")
    assert r.returncode == 2 and "unknown flag --max-token" in r.stderr and "usage: ponder-cli generate" in r.stderr
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command frobnicate" in r.stderr
    r = run("validate")
    assert r.returncode == 2 and "missing CONFIG.json" in r.stderr


def test_messages_use_the_invoked_name(tmp_path):
    link = tmp_path / "ponder"
    os.symlink(CLI, link)
    r = run("run", cli=str(link))
    assert r.returncode == 2 and r.stderr.startswith("ponder: ") and "usage: ponder run" in r.stderr


@pytest.fixture(scope="module")
def short_model(tmp_path_factory):
    """A from-scratch model whose context (64 tokens) is shorter than the default lengths (256)."""
    d = tmp_path_factory.mktemp("short")
    cfg = {"model": {"scratch": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2,
                                 "context_length": 64, "seed": 1}},
           "data": {"train": {"generate": "arithmetic", "count": 8, "seed": 1}, "max_length": 64},
           "training": {"max_steps": 1, "batch_size": 2}, "output": {"dir": str(d / "run")}}
    (d / "sft.json").write_text(json.dumps(cfg))
    r = run("sft", str(d / "sft.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    return str(d / "run" / "checkpoint-1")


def test_default_lengths_fit_a_short_context(short_model):
    r = run("generate", "--model", short_model, "--prompt", "What is 2 + 3?", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["notes"] and "cut" in out["notes"][0]
    assert out["prompt_tokens"] + len(out["completions"][0]["token_ids"]) <= 64
    r = run("infer", "--model", short_model, "--prompt", "What is 2 + 3?", "--strategy", "vote", "--n", "2", "--seed", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["notes"]
    r = run("eval", "--model", short_model, "--data", "arithmetic", "--limit", "3", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["rows"][0]["n"] == 3 and "count" not in doc["rows"][0]
    assert "notes" in doc["details"][0] and "cut" in doc["details"][0]["notes"][0]


def test_errors_name_the_flag_typed(short_model):
    r = run("generate", "--model", short_model, "--prompt", "What is 2 + 3?", "--max-tokens", "200")
    assert r.returncode == 2 and r.stderr.startswith("ponder-cli: --max-tokens:"), r.stderr
    r = run("eval", "--model", short_model, "--data", "arithmetic", "--limit", "2", "--max-new-tokens", "0")
    assert r.returncode == 2 and "--max-new-tokens" in r.stderr, r.stderr
    r = run("generate", "--model", short_model, "--prompt", "hi", "--temperature", "-1")
    assert r.returncode == 2 and r.stderr.startswith("ponder-cli: --temperature:"), r.stderr
