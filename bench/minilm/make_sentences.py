#!/usr/bin/env python3
"""Writes COUNT deterministic English sentences of 6 to 40 words, one per line, in the style
of recommendation reasons. Used by bench/minilm-encode.

    make_sentences.py COUNT OUTPUT
"""
import random
import sys

WORDS = (
    "users who enjoyed this film also liked classic crime dramas with strong characters and a slow "
    "build of suspense the movie offers witty dialogue memorable music and a story about family "
    "friendship loss and redemption viewers that rate science fiction highly tend to appreciate its "
    "visual effects while fans of romantic comedies praise the chemistry between the leads"
).split()

count, output = int(sys.argv[1]), sys.argv[2]
rng = random.Random(2024)
with open(output, "w", encoding="utf-8") as out:
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 40))]
        out.write(" ".join(words).capitalize() + ".\n")
