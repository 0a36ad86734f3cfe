#!/usr/bin/env python3
"""Classifies the checks in completions: what a policy writes when it is paid for reflection.

  python3 scripts/classify_checks.py RUN/stages/NN-grpo/completions.jsonl [--first K] [--last K]

Each reflective sentence inside <think> (one with a keyword of the paper's four dimensions) is
put in one class:
  genuine     an equation that holds, is not an identity, uses only the problem's quantities
              (the question's numbers and what the final answer was derived from) and checks
              something: not the derivation restated (verification), an earlier wrong result
              corrected (backtracking), a quantity the answer uses (subgoals), the answer
              itself (backward chaining)
  identity    nothing computed, or fewer than two quantities besides 0 and 1 ("84 = 84", "1 + 1 = 2")
  unrelated   true arithmetic on numbers the problem does not have ("Verify: 2 + 3 = 5")
  false       the equation does not hold
  restated    the derivation written again ("Check: 12 * 7 = 84" after "12 * 7 = 84")
  keyword     a keyword with no equation near it ("Let me verify.")
  other       an equation that holds on the problem's numbers but checks nothing of its dimension
              (a repeat of quantities already checked, a backtrack with nothing to correct, a
              target that is not the answer)
A sentence with more than two keywords (a pasted list) is "list"; a sentence written twice is
"duplicate". This is the rule docs/CONFIG.md states for the guarded reflection reward, written
again independently (regular expressions and fractions instead of Ponder's parser), so the two can
be compared: tests/python/test_classify_checks.py runs both on Tests/Fixtures/rewards/
reflection_guarded.jsonl. Prints a markdown table for the first and last K logged steps.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from fractions import Fraction

DIMENSIONS = ["backtracking", "verification", "subgoals", "backward_chaining"]
KEYWORDS = [re.compile(p) for p in [
    r"\b(backtrack|error|fix|mistake)\b|re-eval(uate|ation)\b|(flawed|incorrect)\s+(approach|step)",
    r"\b(verify|check|confirm|test)\b|(cross|re)-?val(idate|idation)\b|(unit|dimension)\s+analysis|(edge\s+case|boundary)\s+check",
    r"\b(step|stage|phase|subtask)\b|decompose\sin(to)?\s+\d+|(milestone|checkpoint)\s+\d+|track\sprogress\s(at|on)",
    r"\b(target|goal|required)\b|work(ing)?\sbackwards\b|reverse\s(engineer|logic)|deduce\sfrom\s(final|outcome)",
]]
CLASSES = ["genuine", "identity", "unrelated", "false", "restated", "keyword", "other", "list", "duplicate"]

NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
ATOM = rf"\(?\s*-?\s*(?:{NUMBER})\s*\)?"
EXPR = rf"{ATOM}(?:\s*[-+*/^]\s*{ATOM})*"
# An equation: an expression, "=", an expression; the right side may start the next equation of
# a chain ("84 / 7 = 12 = 12"), hence the lookahead.
EQUATION = re.compile(rf"(?<![\d.,])({EXPR})\s*=(?!=)(?=\s*({EXPR}))")


def number(s: str) -> Fraction:
    return Fraction(s.replace(",", ""))


def key(x: Fraction) -> Fraction:
    return abs(x)


def numbers(s: str) -> list[Fraction]:
    return [key(number(m)) for m in re.findall(NUMBER, s)]


def evaluate(expr: str) -> Fraction | None:
    """The value of +, -, *, /, ^ and parentheses over exact fractions (Python's own precedence)."""
    # Ponder's grammar takes integer exponents up to 64; so does this (and a huge power cannot hang it).
    if any(int(e) > 64 for e in re.findall(r"\^\s*\(?\s*-?\s*(\d+)", expr)):
        return None
    src = re.sub(NUMBER, lambda m: f"F('{m.group(0).replace(',', '')}')", expr.replace("^", "**"))
    try:
        v = eval(src, {"__builtins__": {}}, {"F": Fraction})  # the text is digits, operators and F(...) only
    except (ZeroDivisionError, SyntaxError, TypeError, ValueError, OverflowError):
        return None
    return v if isinstance(v, Fraction) else None


class Equation:
    def __init__(self, lhs: str, rhs: str):
        self.lhs, self.rhs = lhs.strip(), rhs.strip()
        self.left, self.right = evaluate(self.lhs), evaluate(self.rhs)
        self.ok = self.left is not None and self.right is not None
        self.computed = [bool(re.search(r"\d\s*[-+*/^]", s)) for s in (self.lhs, self.rhs)]
        self.quantities = set(numbers(self.lhs)) | set(numbers(self.rhs))

    def holds(self) -> bool:
        if self.left == self.right:
            return True
        decimals = [len(m) for s, c in zip((self.lhs, self.rhs), self.computed) if not c for m in re.findall(r"\.(\d+)$", s)]
        tol = Fraction(1, 2 * 10 ** max(decimals)) if decimals else Fraction(0)
        return abs(self.left - self.right) <= tol

    def identity(self) -> bool:
        return not any(self.computed) or len(self.quantities - {0, 1}) < 2

    def computation(self):
        """(sorted operands of the computed side, the plain number it gives) or None."""
        for a, b, ca, cb in ((self.lhs, self.rhs, *self.computed), (self.rhs, self.lhs, *self.computed[::-1])):
            if ca and not cb and len(numbers(b)) == 1:
                return tuple(sorted(numbers(a))), numbers(b)[0]
        return None


def spelled(s: str) -> str:
    """Operators as the answer normaliser spells them (\\cdot \\times \\ast × → *, \\div ÷ → /,
    − → -), currency signs dropped, an x between numbers read as *."""
    s = re.sub(r"\\cdot|\\times|\\ast|×", "*", s)
    s = re.sub(r"\\div|÷", "/", s).replace("−", "-")
    s = re.sub(r"[$€£¥₹]", "", s)
    return re.sub(r"(?<=\d)( *)x( *)(?=\d)", r"\1*\2", s)


def equations(sentence: str) -> list[Equation]:
    out = []
    for m in EQUATION.finditer(spelled(sentence)):
        e = Equation(m.group(1), m.group(2))
        if e.ok:
            out.append(e)
    return out


def sentences(think: str) -> list[str]:
    parts = re.split(r"(?<=[.!?;])\s+|[\r\n]+", think)
    return [p.strip() for p in parts if p.strip()]


def final_answer(completion: str) -> Fraction | None:
    m = re.search(r"<answer>(.*?)</answer>", completion, re.S)
    if not m:
        return None
    found = re.findall(NUMBER, m.group(1))
    return key(number(found[-1])) if len(found) == 1 else None


def problem_quantities(question: str | None, answer: Fraction | None, eqs: list[Equation]) -> set:
    given = set(numbers(question)) if question else set()
    keys = set(given)
    if answer is None:
        return keys
    first = {}
    for at, e in enumerate(eqs):
        c = e.computation() if e.holds() else None
        if c and c[1] not in first:
            first[c[1]] = (at, c[0])
    keys.add(answer)
    pending, expanded = [(answer, len(eqs))], set()
    while pending:
        k, before = pending.pop()
        if (k in given and k != answer) or k in expanded or k not in first or first[k][0] >= before:
            continue
        expanded.add(k)
        at, operands = first[k]
        for o in operands:
            keys.add(o)
            pending.append((o, at))
    return keys


def classify(prompt: str | None, completion: str) -> list[tuple[str, str]]:
    """(sentence, class) for each reflective sentence of the completion's <think>."""
    m = re.search(r"<think>(.*?)</think>", completion, re.S)
    if not m:
        return []
    sents = sentences(m.group(1).lower())
    eqs = [equations(s) for s in sents]
    answer = final_answer(completion)
    problem = problem_quantities(prompt, answer, [e for es in eqs for e in es])
    counts = [[len(p.findall(s)) for p in KEYWORDS] for s in sents]
    seen, written, wrong, checked = set(), set(), {}, [set() for _ in DIMENSIONS]
    out = []
    for k, s in enumerate(sents):
        reflective = any(counts[k])
        norm = " ".join(s.split())
        duplicate = norm in seen
        seen.add(norm)
        if reflective and duplicate:
            out.append((s, "duplicate"))
        elif reflective and sum(counts[k]) > 2:
            out.append((s, "list"))
        elif reflective:
            cands = eqs[k] or (eqs[k + 1] if k + 1 < len(sents) and not any(counts[k + 1]) else [])
            for d in range(4):
                if counts[k][d]:
                    out.append((s, judge(d, cands, problem, answer, written, wrong, checked[d])))
        for e in eqs[k]:
            c = e.computation()
            if c:
                written.add(c)
                if not e.holds():
                    wrong.setdefault(c[0], set()).add(c[1])
    return out


def judge(d, cands, problem, answer, written, wrong, checked) -> str:
    why = "keyword"
    for e in cands:
        if not e.holds():
            why = "false"
            continue
        if e.identity():
            why = "identity"
            continue
        if not e.quantities <= problem:
            why = "unrelated"
            continue
        c = e.computation()
        if d == 1:
            if c in written:
                why = "restated"
                continue
            k = frozenset(e.quantities)
        elif d == 0:
            if not c or not any(r != c[1] for r in wrong.get(c[0], ())):
                why = "other"
                continue
            k = c[1]
        elif d == 2:
            if not c:
                why = "unrelated"
                continue
            k = c[1]
        else:
            if answer is None or answer not in e.quantities:
                why = "other"
                continue
            k = "answer"
        if k in checked:
            why = "other"
            continue
        checked.add(k)
        return "genuine"
    return why


def table(rows: list[dict]) -> tuple[dict, int]:
    per = Counter()
    for r in rows:
        for _, c in classify(r.get("prompt"), r["completion"]):
            per[c] += 1
    return per, len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("completions")
    ap.add_argument("--first", type=int, default=2, help="logged steps at the start (default 2)")
    ap.add_argument("--last", type=int, default=2, help="logged steps at the end (default 2)")
    ap.add_argument("--json", help="also write the counts here")
    a = ap.parse_args()
    rows = [json.loads(line) for line in open(a.completions) if line.strip()]
    steps = sorted({r["step"] for r in rows})
    spans = {"start": steps[:a.first], "end": steps[-a.last:]}
    result = {}
    print("| steps | completions | " + " | ".join(CLASSES) + " | reflection reward (mean) |")
    print("|---|---:|" + "---:|" * len(CLASSES) + "---:|")
    for name, span in spans.items():
        sel = [r for r in rows if r["step"] in span]
        per, n = table(sel)
        refl = [r["rewards"]["rewards"].get("reflection") for r in sel if "rewards" in r]
        refl = [x for x in refl if x is not None]
        mean = sum(refl) / len(refl) if refl else float("nan")
        result[name] = {"steps": span, "completions": n, "per_completion": {c: per[c] / n for c in CLASSES}, "reflection": mean}
        print(f"| {span[0]}–{span[-1]} | {n} | " + " | ".join(f"{per[c] / n:.2f}" for c in CLASSES) + f" | {mean:.3f} |")
    print("\nCells: checks of each class per completion.")
    if a.json:
        json.dump(result, open(a.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
