#!/usr/bin/env python3
"""Makes Hone's demo tokenizer, deterministically, with no download.

Run once by hand (CI does not need Python):

    pip install tokenizers jinja2
    python3 scripts/make_demo_tokenizer.py

Writes `models/hone-demo/tokenizer.json` and `tokenizer_config.json` (a
byte-level BPE in Hugging Face's format: 256 bytes, the merges the corpus
below supports, at most 1024 tokens in all with a ChatML chat
template), then checks them with Hugging Face's own `tokenizers` and a
Jinja2 environment configured as transformers configures it, and writes
`dataset/tests/fixtures/demo_tokens.json`: rendered conversations, their
token ids and assistant-token counts, which the Rust tests must reproduce.

The BPE trainer is written out here (not `tokenizers`' trainer) so that the
result does not depend on a library version: pairs are counted over the
corpus below, the most frequent pair wins and ties go to the smallest pair.
Running it twice gives byte-identical files.
"""
import json
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "models" / "hone-demo"
FIXTURE = ROOT / "dataset" / "tests" / "fixtures" / "demo_tokens.json"
VOCAB_SIZE = 1024  # bytes + merges + special tokens
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Plain text of the kind Hone's users fine-tune on: questions, answers,
# instructions. Fixed here so the tokenizer never changes by accident.
CORPUS = """
You are a helpful assistant. Answer the question clearly and briefly.
What is the capital of France? The capital of France is Paris.
How do I reset my password? Open the settings page, choose "Security" and then "Reset password".
Summarise the following text in one sentence. The report describes the results of the study.
Translate into German: Good morning, how are you today? Guten Morgen, wie geht es dir heute?
Write a short, friendly reply to this customer email about a delayed order.
Thank you for your patience. Your order was shipped yesterday and should arrive within three days.
Classify the sentiment of this review as positive, negative or neutral: The food was cold.
Negative. The customer complains that the food was served cold.
Explain what a contract clause about liability means for a small business owner.
The clause limits how much each party must pay if something goes wrong under the agreement.
List three symptoms that should make a patient call a doctor immediately.
Chest pain, difficulty breathing and sudden weakness on one side of the body.
Please check the invoice number 12345 and the amount of 678.90 euros before 2026-01-15.
The model learns from examples: each example has a prompt from the user and a response from the assistant.
Fine-tuning adapts a pre-trained language model to a specific task, style or domain.
Training data should be clean, consistent and representative of the questions people will ask.
Validation loss tells you whether the model generalises beyond the training examples.
If the answer is not in the document, say that you do not know instead of guessing.
Our support team is available from Monday to Friday, between 9 am and 5 pm.
The quick brown fox jumps over the lazy dog while the reviewers sign off the evaluation.
Dear team, please find attached the quarterly summary of our maintenance work.
What does this error mean: "connection refused"? The server is not accepting connections on that port.
Convert 25 degrees Celsius to Fahrenheit. 25 degrees Celsius is 77 degrees Fahrenheit.
Give me a recipe for a simple tomato soup with garlic, onion and basil.
The system prompt sets the assistant's role; the user asks; the assistant answers.
"""


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE = bytes_to_unicode()
PRE = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


def train():
    words = Counter()
    for piece in PRE.findall(CORPUS):
        words[tuple(BYTE[b] for b in piece.encode("utf-8"))] += 1
    vocab = [BYTE[b] for b in sorted(BYTE)]  # ids 0..255 in byte order
    merges = []
    words = dict(words)
    while len(vocab) + len(SPECIAL) < VOCAB_SIZE:
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = max(pairs.values())
        if best < 2:
            break
        pair = min(p for p, n in pairs.items() if n == best)
        merges.append(pair)
        vocab.append(pair[0] + pair[1])
        merged = {}
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == pair:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + n
        words = merged
    return vocab, merges


CHAT_TEMPLATE = (
    "{%- for message in messages %}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}\n"
    "{%- if message['content'] is string %}{{- message['content'] }}{%- endif %}\n"
    "{{- '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n"
)


def tokenizer_json(vocab, merges):
    ids = {tok: i for i, tok in enumerate(vocab)}
    added = []
    for s in SPECIAL:
        ids[s] = len(ids)
        added.append({"id": ids[s], "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": level,
        "post_processor": dict(level, trim_offsets=False),
        "decoder": level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {t: ids[t] for t in vocab},
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


def assistant_tokens(encoding, rendered, messages, eos):
    """Tokens inside assistant contents (weight != 0), each followed by the
    end-of-turn token when the template puts it right after: the same rule
    as `hone_dataset::tokens`."""
    spans, at = [], 0
    for m in messages:
        c = m.get("content")
        if not isinstance(c, str) or not c:
            continue
        i = rendered.find(c, at)
        if i < 0:
            continue
        # Python's `tokenizers` reports offsets in characters.
        start, end = i, i + len(c)
        at = end
        if rendered.startswith(eos, at):
            end += len(eos)
        if m["role"] == "assistant" and m.get("weight", 1) != 0:
            spans.append((start, end))
    return sum(1 for s, e in encoding.offsets if any(s < b and e > a for a, b in spans))


def main():
    vocab, merges = train()
    OUT.mkdir(parents=True, exist_ok=True)
    tok = tokenizer_json(vocab, merges)
    (OUT / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n")
    config = {
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 2048,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }
    (OUT / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1) + "\n")

    # Check with Hugging Face's tokenizers and a transformers-style Jinja2.
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(OUT / "tokenizer.json"))
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(CHAT_TEMPLATE)
    conversations = [
        [{"role": "user", "content": "What is the capital of France?"},
         {"role": "assistant", "content": "The capital of France is Paris."}],
        [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "Convert 25 degrees Celsius to Fahrenheit."},
         {"role": "assistant", "content": "77 degrees Fahrenheit.", "weight": 0},
         {"role": "user", "content": "And 100?"},
         {"role": "assistant", "content": "212 °F — water boils. Ünïcödé, 日本語 and emoji 🙂 too."}],
        [{"role": "user", "content": "  spaces\tand\nnew lines  "},
         {"role": "assistant", "content": "Done.\n\n"}],
    ]
    cases = []
    for messages in conversations:
        rendered = template.render(messages=messages, add_generation_prompt=False)
        enc = hf.encode(rendered, add_special_tokens=False)
        assert hf.decode(enc.ids, skip_special_tokens=False) == rendered, rendered
        cases.append({"messages": messages, "rendered": rendered, "ids": enc.ids,
                      "assistant_tokens": assistant_tokens(enc, rendered, messages, config["eos_token"])})
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(vocab) + len(SPECIAL)} tokens, {len(merges)} merges; {len(cases)} reference cases")


if __name__ == "__main__":
    main()
