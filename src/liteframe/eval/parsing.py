"""Answer letters from generated text, as lmms-eval extracts them (so that accuracies compare with published ones).

`extract_letter` follows lmms-eval's `extract_mcq_answer` (Video-MME, MLVU): every place a choice letter appears in
a recognised form is a candidate; the form with the highest priority wins, and within it the last occurrence.
`parse_longvideobench` follows LongVideoBench's own parser: the first capital A-E after removing answer phrases.
`strip_reasoning` removes a reasoning model's `<think>` and `<analysis>` blocks first, as lmms-eval's CLI does.
"""
from __future__ import annotations

import random

# lmms-eval's answer phrases (a letter after one of them is a candidate), English first.
PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select", "i pick",
    "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)
# Higher wins: a letter alone at the start, then at the end, then after a phrase, then (A), A., A:, A), "A ".
PRIORITY = {"start": 10, "end": 9, "phrase": 7, "(X)": 6, "X.": 5, "X:": 4, "X)": 3, "X ": 2, "anywhere": 0}
# lmms-eval's `--reasoning_tags` default: the blocks its evaluator removes from an answer before scoring it
REASONING_TAGS = (("<think>", "</think>"), ("<analysis>", "</analysis>"))
LVB_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
                "The correct option is", "Best answer:", "Best option:")


def strip_reasoning(text: str, tags=REASONING_TAGS) -> str:
    """`text` without its reasoning blocks, as lmms-eval 0.7.3's evaluator strips them (`api/reasoning.py`): per
    tag pair in turn, each block from an opening tag to the next closing tag is cut; a closing tag left without any
    opening one (the chat template opened the block) keeps only what follows its last occurrence; an unclosed
    opening tag stays. Tags are case-sensitive; the result is stripped of surrounding whitespace."""
    for opening, closing in tags:
        while (start := text.find(opening)) >= 0 and (end := text.find(closing, start)) >= 0:
            text = text[:start] + text[end + len(closing):]
        if closing in text and opening not in text:
            text = text.rsplit(closing, 1)[-1]
    return text.strip()


def extract_letter(text: str, choices: str = "ABCD") -> str:
    """The chosen letter in `text`, or "" when there is none."""
    if not text.strip():
        return ""
    body = text.strip()
    for mark in ",.!?;:'\"":  # one mark at a time, as lmms-eval strips them
        body = body.strip(mark)
    padded = f" {body} "
    found = []  # (priority, position, letter)
    for form in ("(X)", "X.", "X:", "X)", "X "):
        for letter in choices:
            at = padded.rfind(form.replace("X", letter))
            if at >= 0:
                found.append((PRIORITY[form], at, letter))
    lower = padded.lower()
    for phrase in PHRASES:
        at = lower.find(phrase)
        if at >= 0:
            found += [(PRIORITY["phrase"], pos, letter) for letter in choices
                      if (pos := padded.find(letter, at + len(phrase))) >= 0]
    bare = padded.strip()
    for letter in choices:
        if bare.startswith(letter) and (len(bare) == 1 or not bare[1].isalpha()):
            found.append((PRIORITY["start"], 0, letter))
        if bare.endswith(letter) and (len(bare) == 1 or not bare[-2].isalpha()):
            found.append((PRIORITY["end"], len(padded) - 1, letter))
    if not found:
        found = [(PRIORITY["anywhere"], padded.rfind(letter), letter) for letter in choices if letter in padded]
    # max keeps the first of equal keys, as lmms-eval's stable sort does
    return max(found, key=lambda c: c[:2])[2] if found else ""


def parse_longvideobench(text: str) -> str:
    """The first capital A-E once answer phrases are removed (whatever the number of options, as LongVideoBench's
    parser does), or "" where it guesses at random: no such letter at all."""
    body = text.strip()
    for prefix in LVB_PREFIXES:
        body = body.replace(prefix, "")
    return next((c for c in body if c in "ABCDE"), "")


def guess(question_id: str, choices: str) -> str:
    """LongVideoBench scores an unparsable answer as a random choice; seeded by the question so runs repeat."""
    return random.Random(question_id).choice(choices)
