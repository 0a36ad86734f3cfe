"""scripts/classify_checks.py (the red-team classifier, written independently of Ponder's parser)
agrees with the labels of the guarded-reflection table that RewardTests checks Ponder against."""
import collections
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import classify_checks  # noqa: E402

# Ponder's reasons name why a check of the right numbers still checked nothing of its dimension;
# the classifier has one class for those.
OTHER = {"repeated", "nothing_corrected", "not_the_answer"}


def rows():
    with open(os.path.join(ROOT, "Tests", "Fixtures", "rewards", "reflection_guarded.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_classifier_agrees_with_the_table():
    table = rows()
    assert len(table) >= 40
    for r in table:
        completion = f"<think>\n{r['think']}\n</think>\n<answer>\n{r['answer']}\n</answer>"
        got = collections.Counter(c for _, c in classify_checks.classify(r.get("prompt"), completion)
                                  if c not in ("list", "duplicate"))
        want = collections.Counter("other" if c in OTHER else c for c in r["checks"])
        assert got == want, (r["id"], r["why"], classify_checks.classify(r.get("prompt"), completion))


def test_lists_and_duplicates_are_named():
    c = "<think>\n12 * 7 = 84. verify check confirm 84 / 7 = 12. Check: 84 / 12 = 7. Check: 84 / 12 = 7.\n</think>\n<answer>84</answer>"
    assert [k for _, k in classify_checks.classify("What is 12 * 7?", c)] == ["list", "genuine", "duplicate"]
