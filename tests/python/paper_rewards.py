"""Test oracle: the seed paper's reflection and format rewards, run by CPython's `re`.

Re-expressed from the published definition (repository Red-Scarff/GRPO_reflection, file
open-r1/src/open_r1/rewards.py at commit f730f5e, the newest `reflection_reward`, and
`format_reward`): the same four verbose patterns, the same counting (`findall` on the lower-cased
completion, one alternation per dimension), the same decay, squashing and rounding. Ponder's
hand-translated matcher (Sources/PonderRewards/Reflection.swift) must give the same numbers.
"""
import math
import re

# One alternation per dimension, as published (verbose mode: layout whitespace is ignored).
DIMENSIONS = [
    r"""(?x)
    \b(backtrack|error|fix|mistake)\b|
    re-eval(uate|ation)\b|
    (flawed|incorrect)\s+(approach|step)
    """,
    r"""(?x)
    \b(verify|check|confirm|test)\b|
    (cross|re)-?val(idate|idation)\b|
    (unit|dimension)\s+analysis|
    (edge\s+case|boundary)\s+check
    """,
    r"""(?x)
    \b(step|stage|phase|subtask)\b|
    decompose\sin(to)?\s+\d+|
    (milestone|checkpoint)\s+\d+|
    track\sprogress\s(at|on)
    """,
    r"""(?x)
    \b(target|goal|required)\b|
    work(ing)?\sbackwards\b|
    reverse\s(engineer|logic)|
    deduce\sfrom\s(final|outcome)
    """,
]
COMPILED = [re.compile(p) for p in DIMENSIONS]
WEIGHT = 0.5
DECAY_BASE = 2.5

FORMAT_PATTERN = r"^<think>.*?</think>\s*<answer>.*?</answer>$"


def reflection_counts(text):
    lower = text.lower()
    return [len(p.findall(lower)) for p in COMPILED]


def reflection_reward(text):
    per_dimension = {}
    for k, pattern in enumerate(COMPILED):
        for i, _ in enumerate(pattern.findall(text.lower()), 1):
            per_dimension[k] = per_dimension.get(k, 0.0) + WEIGHT * (1 / (1 + (i - 1) / DECAY_BASE))
    raw = sum(per_dimension.values())
    c = 0.8 * math.log1p(raw)
    return round(1 - 1 / (1 + c ** 1.2), 2)


def format_reward(text):
    return 1.0 if re.match(FORMAT_PATTERN, text, re.DOTALL | re.MULTILINE) else 0.0
