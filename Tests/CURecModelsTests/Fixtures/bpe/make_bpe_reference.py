#!/usr/bin/env python3
"""Writes reference.json for the BPE tests with the Hugging Face `tokenizers` library.

1. Loads swift_trained/tokenizer.json (written by the Swift BPETrainer on corpus.txt; refresh
   it with `UPDATE_BPE_FIXTURE=1 swift test --filter BPEReference`) and encodes SENTENCES.
2. Trains a ByteLevel BPE with `tokenizers` on corpus.txt, saves it as hf_trained/tokenizer.json
   and as GPT-2 files (hf_trained/vocab.json, hf_trained/merges.txt), and encodes SENTENCES.
3. Records the ByteLevel pre-tokenizer's pieces of SENTENCES and of random Unicode strings.

Run from this folder: `python3 make_bpe_reference.py`.
"""
import json
import os
import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SENTENCES = [
    "The movie was great, and I'd watch it again.",
    "Users who liked Toy Story also liked Fargo.",
    "She's here; we'll see. They've gone, I'm sure you're right. He'd LEFT. 'twas 'S",
    "   leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\r\n\n  mixed \t\n whitespace",
    "Numbers 12345 and 3.14 and ٣٤٥ and ½ and Ⅻ.",
    "Café naïve résumé Zürich Ångström",
    "東京で映画を見ました。",
    "Emoji 🎬🍿👍🏽 and ZWJ 👨‍👩‍👧 sequences",
    "<|endoftext|>special tokens<|endoftext|> are never split <|endoftext",
    "symbols!!! ??? ... --- *** @@@ ### $$$ %%% ^^^ &&& (((",
    "unseenwordsthatweremostlikelyneverinthecorpus",
    "",
    " ",
    "x",
]


def random_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pools = [
        "abcXYZ", "0123456789", " ", "  ", "\t", "\n", "'", "'s", "'ll", "'re", "!?.,;:-", "éüñ", "ßÅ",
        "中文字", "ひらがな", "한국어", "١٢٣", "Ⅻ½", "🎬", "👍🏽", "\u200b", "\u00a0", "\u3000", "\u0301",
    ]
    out = []
    for _ in range(count):
        out.append("".join(rng.choice(pools) for _ in range(rng.randint(1, 12))))
    return out


def main() -> None:
    corpus = open("corpus.txt", encoding="utf-8").read()
    lines = corpus.split("\n")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)

    swift = Tokenizer.from_file("swift_trained/tokenizer.json")

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = byte_level
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, min_frequency=2, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(lines, trainer=trainer)
    os.makedirs("hf_trained", exist_ok=True)
    hf.save("hf_trained/tokenizer.json")
    hf.model.save("hf_trained")

    pieces_of = lambda text: [piece for piece, _ in byte_level.pre_tokenize_str(text)]
    randoms = random_strings(200, seed=11)
    reference = {
        "sentences": SENTENCES,
        "swift_trained_ids": [swift.encode(s).ids for s in SENTENCES],
        "hf_trained_ids": [hf.encode(s).ids for s in SENTENCES],
        "hf_trained_decoded": [hf.decode(hf.encode(s).ids, skip_special_tokens=False) for s in SENTENCES],
        "pretokenized": [{"text": t, "pieces": pieces_of(t)} for t in SENTENCES + randoms],
    }
    with open("reference.json", "w", encoding="utf-8") as out:
        json.dump(reference, out, ensure_ascii=False, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
