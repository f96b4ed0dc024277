#!/usr/bin/env python3
"""Writes smollm2_tokenizer_reference.json: SmolLM2-135M-Instruct token ids of varied texts and
chat prompts, from Hugging Face `tokenizers`/`transformers` built from the model's GGUF file.

    python3 Tests/CURecModelsTests/Fixtures/make_smollm2_tokenizer_reference.py [GGUF]

GGUF defaults to var/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by
scripts/fetch-lm). Needs transformers, tokenizers and gguf.

transformers' GGUF conversion gives the tokenizer a plain ByteLevel pre-tokenizer, but the
model's own tokenizer.json (and llama.cpp's pre-tokenizer type "smollm" named in the file's
tokenizer.ggml.pre) first isolates every number character (Digits(individual_digits=True)) and
then applies the ByteLevel split. The reference ids use the model's real pre-tokenizer; where the
GGUF conversion disagrees, its ids are recorded too, as `gguf_conversion_ids`.
"""
import copy
import hashlib
import json
import os
import sys

from tokenizers import pre_tokenizers
from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEFAULT_GGUF = os.path.join(ROOT, "var/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
OUTPUT = os.path.join(HERE, "smollm2_tokenizer_reference.json")

TEXTS = [
    "Amélie (2001)",
    "Se7en",
    "The film grossed $1,682 million, about 3.14 times its budget of 0.5%.",
    "Released 2023-07-14; re-released 14/07/2024 at 10:30pm (UTC+02:00).",
    "I'd say it's the best; they're sure we'll love it, won't you? I've 'quoted' it.",
    "Loved it 😍👍🏽 10/10 ❤️",
    "Family 👨‍👩‍👧‍👦, rainbow 🏳️‍🌈 and flags 🇫🇷🇯🇵🇺🇸",
    "千と千尋の神隠し (Spirited Away, 2001) 은 최고의 영화입니다. 电影很好看！",
    "  leading,   multiple   spaces\n\n\ttabs\tand\r\nCRLF  \n",
    "def f(x):\n    return x**2 + 1  # square\n\nprint(f(3))\n",
    "See https://www.imdb.com/title/tt0114369/?ref_=nv_sr_1#plot for details.",
    "<|im_start|>user\nRecommend a movie<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>The end.<|endoftext|><repo_name>x<file_sep>",
    "Crème brûlée, naïve façade, Ærøskøbing, Straße, Ελληνικά, Русский язык",
    "Pi ≈ 3.14159, e=2.71828; ½ + ¾ = 1¼; x² + y³; Ⅻ and ١٢٣",
    "Score:  9.5 out of  10, rank\t 3",
    "Toy Story (1995) | Jumanji (1995) | Grumpier Old Men (1995)",
    "",
    "Non\u00a0breaking, zero\u200bwidth, soft\u00adhyphen, e\u0301 combining",
    "Arabic: مرحبا بالعالم; Hindi: नमस्ते दुनिया; Thai: สวัสดี",
    "WOW!!! ... ??? --- *** <<>> {json: [1, 2]} a_b-c.d",
    "<|im_start and <im_end|> are not special, nor is <|IM_END|>",
    "control\u0004byte, bell\u0007, and text",
    # Canonically equivalent but different characters must keep their own bytes.
    "em\u2003space; em\u2001quad\u037e ok\u0343 ok\u0313 \u212b \u00c5",
]

CHATS = [
    ([{"role": "user", "content": "Recommend a film like Amélie (2001)."}], True),
    ([{"role": "system", "content": "You are a film critic."},
      {"role": "user", "content": "Why watch Se7en?"}], True),
    ([{"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello! How can I help?"},
      {"role": "user", "content": "Name 3 films from 1995."}], False),
    ([{"role": "user", "content": "Hello"},
      {"role": "system", "content": "Answer briefly."}], True),
]


def token_ids(encoding):
    if isinstance(encoding, dict) or hasattr(encoding, "keys"):
        encoding = encoding["input_ids"]
    return list(encoding)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF
    directory, name = os.path.split(os.path.realpath(path))
    converted = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    tokenizer = copy.deepcopy(converted)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])

    cases = []
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        case = {
            "text": text,
            "ids": ids,
            "decoded": tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False),
        }
        plain = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if plain != ids:
            case["ids_without_special_tokens"] = plain
        other = converted.encode(text, add_special_tokens=False)
        if other != ids:
            case["gguf_conversion_ids"] = other
        cases.append(case)

    chats = []
    for messages, generation_prompt in CHATS:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        ids = token_ids(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt))
        chats.append({"messages": messages, "add_generation_prompt": generation_prompt, "text": text, "ids": ids})

    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    reference = {
        "model_file": name,
        "model_sha256": digest,
        "pre_tokenizer": "Digits(individual_digits) then ByteLevel (tokenizer.ggml.pre = smollm)",
        "bos_token_id": converted.bos_token_id,
        "eos_token_id": converted.eos_token_id,
        "cases": cases,
        "chats": chats,
    }
    with open(OUTPUT, "w", encoding="utf-8") as handle:
        json.dump(reference, handle, ensure_ascii=False, indent=1)
        handle.write("\n")
    differing = sum(1 for case in cases if "gguf_conversion_ids" in case)
    print(f"wrote {OUTPUT}: {len(cases)} texts ({differing} where the GGUF conversion differs), {len(chats)} chats")


if __name__ == "__main__":
    main()
