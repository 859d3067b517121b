#!/usr/bin/env python3
"""A small CLIP-style BPE tokenizer for the tokenizer fuzz harness
(tests/fuzz/tokenizer/): GPT-2's byte-to-unicode table (the 256 byte
symbols and their '</w>' forms, as CLIP's vocabulary has them), a handful of
merges, and the two special tokens. Small, so that a fuzz iteration is fast;
valid, so that the fuzzer reaches the encoder."""
import json, os, sys

def byte_symbols():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "tokenizer")
os.makedirs(out, exist_ok=True)
syms = byte_symbols()
vocab = syms + [s + "</w>" for s in syms]
merges = [("t", "h"), ("th", "e</w>"), ("a", "</w>"), ("o", "f</w>"), ("p", "h"), ("ph", "o"), ("c", "a"), ("ca", "t</w>")]
for a, b in merges:
    vocab.append(a + b)
vocab += ["<|startoftext|>", "<|endoftext|>"]
with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
