"""Tests of vidcore.text: word-vector readers, tokenisation, TextEncoder.

Real data (copies in tests/data, see NOTICE.md): a word2vec C binary file
(gensim test data, 2,747 words x 10), 76 rows of GloVe 6B 50-d, and the
1,000 MSR-VTT test captions.
"""
import csv
import gzip
import os
import random
import struct
import sys
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from vidcore.errors import DataError, UserInputError
from vidcore.text import (TextEncoder, WordVectors, python_tokenize,
                          tokenize)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# gensim's euclidean_vectors.bin, shipped as the demo's word vectors.
W2V_BIN = os.path.join(ROOT, "howto", "data", "demo_word_vectors.bin")
GLOVE_TXT = os.path.join(HERE, "data", "wordvec", "test_glove.txt")
DEMO_BIN = os.path.join(ROOT, "howto", "data", "demo_word_vectors.bin")


def _captions_path():
    return os.path.join(ROOT, "howto", "data", "msrvtt_test.csv")


# ----------------------------------------------------------------------------
# independent slow references
# ----------------------------------------------------------------------------

def slow_read_word2vec_binary(path):
    """Per-word struct parsing of the whole file (keeps duplicates)."""
    with open(path, "rb") as f:
        data = f.read()
    header, _, body = data.partition(b"\n")
    num_words, dim = (int(x) for x in header.split())
    words, vectors, i = [], [], 0
    for _ in range(num_words):
        while body[i:i + 1] == b"\n":
            i += 1
        j = body.index(b" ", i)
        words.append(body[i:j].decode("utf-8", "replace"))
        i = j + 1
        vectors.append(struct.unpack("<%df" % dim, body[i:i + 4 * dim]))
        i += 4 * dim
    return words, np.array(vectors, np.float32).reshape(num_words, dim)


def slow_read_glove(path):
    words, vectors = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split(" ")
            words.append(fields[0])
            vectors.append([float(x) for x in fields[1:]])
    return words, np.array(vectors, np.float32)


def write_word2vec_binary(path, entries, newline=True, header=None):
    """entries: list of (word bytes, float vector); newline: bool or list."""
    dim = len(entries[0][1])
    with open(path, "wb") as f:
        f.write(header if header is not None
                else b"%d %d\n" % (len(entries), dim))
        for k, (word, vec) in enumerate(entries):
            f.write(word + b" " + np.asarray(vec, "<f4").tobytes())
            nl = newline[k] if isinstance(newline, (list, tuple)) else newline
            if nl:
                f.write(b"\n")


def reference_ids(wv, caption, max_words):
    """Pure-Python pipeline: tokenise, drop OOV, truncate, pad."""
    ids = [wv.word_id(t) for t in python_tokenize(caption)]
    ids = [i for i in ids if i][:max_words]
    return ids + [0] * (max_words - len(ids))


@pytest.fixture(scope="module")
def w2v():
    return WordVectors.from_word2vec_binary(W2V_BIN)


@pytest.fixture(scope="module")
def encoder(w2v):
    return TextEncoder(w2v)


@pytest.fixture(scope="module")
def captions():
    with open(_captions_path(), encoding="utf-8", newline="") as f:
        return [row["sentence"] for row in csv.DictReader(f)]


def _tf_tokens(strings):
    out = tokenize(tf.constant(strings, tf.string))
    return [[t.decode("utf-8") for t in row] for row in out.to_list()]


# ----------------------------------------------------------------------------
# word2vec binary
# ----------------------------------------------------------------------------

def test_word2vec_binary_matches_slow_reference_and_known_values(w2v):
    words, vectors = slow_read_word2vec_binary(W2V_BIN)
    assert len(set(words)) == len(words) == 2747
    assert w2v.size == 2747 and w2v.dim == 10
    assert w2v.words == words
    assert w2v.vectors.dtype == np.float32
    np.testing.assert_array_equal(w2v.vectors, vectors)
    # Known values (first bytes of the file: "the " b9c8d73e f2316f3f ...).
    assert w2v.words[:5] == ["the", "to", "of", "in", "and"]
    np.testing.assert_allclose(w2v.vectors[0, :3],
                               [0.42145327, 0.93435585, -0.05091386],
                               rtol=1e-7)
    assert struct.pack("<f", w2v.vectors[0, 0]) == bytes.fromhex("b9c8d73e")
    assert w2v.word_id("the") == 1 and w2v.word_id("The") == 0
    np.testing.assert_allclose(w2v.vectors[w2v.word_id("woman") - 1, :3],
                               [0.05541965, 0.9834357, -0.6735273], rtol=1e-7)
    # The demo copy is the same file.
    with open(DEMO_BIN, "rb") as a, open(W2V_BIN, "rb") as b:
        assert a.read() == b.read()


def test_word2vec_binary_vocabulary_limit_and_chunking(w2v, monkeypatch,
                                                       tmp_path):
    vocab = ["woman", "the", "not-a-word", "man", "king"]
    sub = WordVectors.from_word2vec_binary(W2V_BIN, vocabulary=vocab)
    expected = [w for w in w2v.words if w in set(vocab)]  # file order
    assert sub.words == expected and "not-a-word" not in sub
    for w in expected:
        np.testing.assert_array_equal(sub.vectors[sub.word_id(w) - 1],
                                      w2v.vectors[w2v.word_id(w) - 1])
    first = WordVectors.from_word2vec_binary(W2V_BIN, limit=7)
    assert first.words == w2v.words[:7]
    np.testing.assert_array_equal(first.vectors, w2v.vectors[:7])
    both = WordVectors.from_word2vec_binary(W2V_BIN, vocabulary=vocab,
                                            limit=100)
    assert both.words == [w for w in w2v.words[:100] if w in set(vocab)]
    # Tiny read chunks exercise every buffer-boundary case.
    import vidcore.text as text
    monkeypatch.setattr(text, "_READ_CHUNK", 7)
    small = WordVectors.from_word2vec_binary(W2V_BIN)
    assert small.words == w2v.words
    np.testing.assert_array_equal(small.vectors, w2v.vectors)
    # gzip is read transparently.
    gz = tmp_path / "v.bin.gz"
    with open(W2V_BIN, "rb") as f:
        gz.write_bytes(gzip.compress(f.read()))
    np.testing.assert_array_equal(WordVectors.load(str(gz)).vectors,
                                  w2v.vectors)


def test_word2vec_binary_tricky_synthetic(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    raw = [b"the", "na\u00efve".encode(), "\u65e5\u672c\u8a9e".encode(),
           "emoji\U0001F600".encode(), b"it's", b"the", b"\xff\xfeab",
           b"Under_score", "\u00e9".encode()]
    vecs = rng.normal(size=(len(raw), 4)).astype(np.float32)
    path = str(tmp_path / "tricky.bin")
    newline = [True, False, True, False, False, True, False, True, False]
    write_word2vec_binary(path, list(zip(raw, vecs)), newline=newline)
    import vidcore.text as text
    for chunk in (1 << 24, 5):
        monkeypatch.setattr(text, "_READ_CHUNK", chunk)
        wv = WordVectors.load(path)
        assert wv.words == ["the", "na\u00efve", "\u65e5\u672c\u8a9e",
                            "emoji\U0001F600", "it's", "\ufffd\ufffdab",
                            "Under_score", "\u00e9"]
        keep = [0, 1, 2, 3, 4, 6, 7, 8]       # the second "the" is dropped
        np.testing.assert_array_equal(wv.vectors, vecs[keep])
    with pytest.raises(DataError, match=r"tricky\.bin.*word 6 of 9"):
        WordVectors.from_word2vec_binary(path, unicode_errors="strict")
    assert WordVectors.load(path, unicode_errors="ignore").words[5] == "ab"
    # Round trips: saved form, and write back to word2vec binary.
    WordVectors(wv.words, wv.vectors).save(str(tmp_path / "saved"))
    back = WordVectors.load(str(tmp_path / "saved"))
    assert back.words == wv.words and back.vectors.dtype == np.float32
    np.testing.assert_array_equal(back.vectors, wv.vectors)
    path2 = str(tmp_path / "again.bin")
    write_word2vec_binary(path2, [(w.encode(), v) for w, v in
                                  zip(wv.words, wv.vectors)], newline=False)
    again = WordVectors.load(path2)
    assert again.words == wv.words
    np.testing.assert_array_equal(again.vectors, wv.vectors)


def test_word2vec_binary_truncated_and_corrupt(tmp_path):
    with open(W2V_BIN, "rb") as f:
        data = f.read()
    header_len = data.index(b"\n") + 1
    entry = 4 + 40      # "the " + 10 floats: find the start of word 100
    offset = header_len
    for _ in range(100):
        offset = data.index(b" ", offset) + 1 + 40
    assert entry == data.index(b" ", header_len) + 1 + 40 - header_len
    cut = tmp_path / "cut.bin"
    for end, k in ((offset + 2, 100), (offset + 20, 100), (offset, 100),
                   (header_len + 10, 0)):
        cut.write_bytes(data[:end])
        with pytest.raises(DataError, match=rf"cut\.bin.*word {k} of 2747"):
            WordVectors.from_word2vec_binary(str(cut))
    # Limit stops before the cut: no error.
    cut.write_bytes(data[:offset + 2])
    assert WordVectors.from_word2vec_binary(str(cut), limit=100).size == 100
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"hello world\n" + data[header_len:])
    with pytest.raises(DataError, match=r"bad\.bin.*'V dim'"):
        WordVectors.from_word2vec_binary(str(bad))
    bad.write_bytes(b"2746 10\n" + data[header_len:])
    with pytest.raises(DataError, match=r"bad\.bin.*more data after"):
        WordVectors.from_word2vec_binary(str(bad))
    bad.write_bytes(b"2747 11\n" + data[header_len:])    # wrong dim
    with pytest.raises(DataError, match=r"bad\.bin.*word \d+ of 2747"):
        WordVectors.from_word2vec_binary(str(bad))


# ----------------------------------------------------------------------------
# text formats, load(), save()
# ----------------------------------------------------------------------------

def test_glove_text_matches_reference_and_known_values(tmp_path):
    g = WordVectors.load(GLOVE_TXT)
    words, vectors = slow_read_glove(GLOVE_TXT)
    assert g.size == 76 and g.dim == 50
    assert g.words == words and g.words[:3] == ["the", "\u00f6", "\u00e9"]
    np.testing.assert_array_equal(g.vectors, vectors)
    np.testing.assert_allclose(g.vectors[0, :3], [0.418, 0.24968, -0.41242])
    # The word2vec text format: same lines after a "V dim" header.
    with open(GLOVE_TXT, "rb") as f:
        body = f.read()
    hdr = tmp_path / "w2v.txt"
    hdr.write_bytes(b"76 50\n" + body.replace(b"\n", b" \n"))
    h = WordVectors.load(str(hdr))
    assert h.words == g.words
    np.testing.assert_array_equal(h.vectors, g.vectors)
    sub = WordVectors.load(str(hdr), vocabulary=["of", "\u00e9", "zzz"],
                           limit=20)
    assert sub.words == [w for w in g.words[:20] if w in ("of", "\u00e9")]
    gz = tmp_path / "g.txt.gz"
    gz.write_bytes(gzip.compress(body))
    np.testing.assert_array_equal(WordVectors.load(str(gz)).vectors,
                                  g.vectors)


@pytest.mark.parametrize("line,match", [
    (b"bad 0.1 x 0.3", r"bad\.txt:3: bad value"),
    (b"short 0.1 0.2", r"bad\.txt:3: expected a word and 3 values"),
    (b"long 0.1 0.2 0.3 0.4", r"bad\.txt:3: more than 3 values"),
    (b"", r"bad\.txt:3: empty line"),
])
def test_glove_text_bad_line_names_file_and_line(tmp_path, line, match):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"a 1 2 3\nb 4 5 6\n" + line + b"\nc 7 8 9\n")
    with pytest.raises(DataError, match=match):
        WordVectors.from_glove_text(str(p))


def test_glove_text_word_with_space_and_duplicates(tmp_path):
    p = tmp_path / "g.txt"
    p.write_bytes(b"a 1 2\n. . . 3 4\na 5 6\nb\xc2\xa0c 7 8\n")
    g = WordVectors.from_glove_text(str(p))
    assert g.words == ["a", ". . .", "b\u00a0c"]
    np.testing.assert_array_equal(g.vectors, [[1, 2], [3, 4], [7, 8]])


def test_load_sniffs_format_and_save_round_trip(w2v, tmp_path):
    renamed = tmp_path / "vectors.txt"            # binary despite the name
    with open(W2V_BIN, "rb") as f:
        renamed.write_bytes(f.read())
    assert WordVectors.load(str(renamed)).words == w2v.words
    with pytest.raises(UserInputError, match="unknown word-vector format"):
        WordVectors.load(W2V_BIN, format="fasttext")
    with pytest.raises(UserInputError, match="does not exist"):
        WordVectors.load(str(tmp_path / "missing.bin"))
    d = str(tmp_path / "saved")
    w2v.save(d)
    back = WordVectors.load_saved(d)
    assert isinstance(back.vectors, np.memmap)
    assert back.words == w2v.words
    np.testing.assert_array_equal(back.vectors, w2v.vectors)
    assert WordVectors.load(d, limit=3).words == w2v.words[:3]
    m = w2v.embedding_matrix()
    assert m.shape == (2748, 10) and m.dtype == np.float32
    np.testing.assert_array_equal(m[0], 0)
    np.testing.assert_array_equal(m[1:], w2v.vectors)
    with pytest.raises(UserInputError, match="line break"):
        WordVectors(["a", "b\nc"], np.zeros((2, 3))).save(str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x" / "vocab.txt")
    with pytest.raises(UserInputError, match="appears twice"):
        WordVectors(["a", "b", "a"], np.zeros((3, 2)))
    with open(os.path.join(d, "vocab.txt"), "a", encoding="utf-8") as f:
        f.write("extra\n")
    with pytest.raises(DataError, match="2748 words but vectors.npy has 2747"):
        WordVectors.load_saved(d)


# ----------------------------------------------------------------------------
# tokenisation
# ----------------------------------------------------------------------------

TRICKY = [
    "", " ", "a person is connecting something to system",
    "A Man's DOG, isn't it?  'quoted'  rock'n'roll '' '",
    "hello,world;foo.bar!baz?(qux)[x]{y}<z>-dash--em\u2014dash/slash\\",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m \u0141\u00f3d\u017a",
    "cafe\u0301 decomposed n\u0303",                  # combining marks (Mn)
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3002\u4e2d\u6587\uff0c\u6d4b\u8bd5",
    "\ud55c\uad6d\uc5b4 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 "
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u0e44\u0e17\u0e22",
    "3.14 1,000 42nd x\u00b2 \u2167 \u00bd \u0663\u0664 \uff11\uff12 \u2460",
    "snake_case __dunder__ _ a_b_c",
    "emoji \U0001F600\U0001F44D\U0001F3FD ok\u2764\ufe0f \U0001F1EB\U0001F1F7",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em\u3000ideo",
    "\u02bcmodifier \u2019curly\u2019 \u00aaordinal \u01c5titlecase",
    "\U00010400\U00010401 deseret \U0001D400 math bold",
    "'''", "'a'", "don't won't y'all",
    "nul\x00byte ctrl\x01\x7f next\u0085line sep\u2028par\u2029end",
]


def test_python_tokenize_reference():
    assert python_tokenize("A Man's dog, isn't it?") == [
        "A", "Man's", "dog", "isn't", "it"]
    assert python_tokenize(float("nan")) == ["nan"]
    assert python_tokenize(b"caf\xc3\xa9 \xffx") == ["caf\u00e9", "x"]
    assert python_tokenize("") == []


def test_tokenize_matches_python_on_tricky_strings():
    assert _tf_tokens(TRICKY) == [python_tokenize(s) for s in TRICKY]
    # Invalid UTF-8: U+FFFD replacement on both sides.
    raw = [b"ab\xffcd e\xc3", b"\xe6\x97"]
    got = tokenize(tf.constant(raw)).to_list()
    assert [[t.decode() for t in row] for row in got] == [
        python_tokenize(r) for r in raw]


def test_tokenize_matches_python_on_random_unicode():
    rng = random.Random(1234)
    assigned = [cp for cp in range(0x30000)
                if not 0xD800 <= cp <= 0xDFFF
                and unicodedata.category(chr(cp)) != "Cn"]
    common = "abc XYZ 019 _'  .,-\u00e9\u0301\u4e00"
    strings = []
    for _ in range(400):
        n = rng.randint(0, 30)
        strings.append("".join(
            rng.choice(common) if rng.random() < 0.4
            else chr(rng.choice(assigned)) for _ in range(n)))
    assert _tf_tokens(strings) == [python_tokenize(s) for s in strings]


def test_token_characters_match_python_on_every_code_point():
    """Every code point: is it a token character in TF and in Python? They
    may differ only where Python's Unicode database says 'unassigned'."""
    cps = [cp for cp in range(sys.maxunicode + 1)
           if not 0xD800 <= cp <= 0xDFFF]
    # One string with every code point between spaces: the tokens are the
    # token characters, one per token.
    text = " ".join(chr(cp) for cp in cps)
    tf_chars = [t.decode("utf-8") for t in
                tokenize(tf.constant(text.encode("utf-8"))).numpy()]
    py_chars = python_tokenize(text)
    assert all(len(t) == 1 for t in tf_chars + py_chars)
    differ = sorted(ord(c) for c in set(tf_chars) ^ set(py_chars))
    assert all(unicodedata.category(chr(cp)) == "Cn" for cp in differ), [
        hex(cp) for cp in differ[:10]]
    assert len(differ) < 10000


def test_tokenize_shapes():
    one = tokenize(tf.constant("Hello, world's end"))
    assert isinstance(one, tf.Tensor) and one.shape.rank == 1
    assert one.numpy().tolist() == [b"Hello", b"world's", b"end"]
    two = tokenize(tf.constant([["a b", "c"], ["", "d e f"]]))
    assert two.shape.rank == 3
    assert two.to_list() == [[[b"a", b"b"], [b"c"]], [[], [b"d", b"e", b"f"]]]
    empty = tokenize(tf.constant([], tf.string))
    assert empty.shape[0] == 0


# ----------------------------------------------------------------------------
# TextEncoder
# ----------------------------------------------------------------------------

def test_encoder_matches_python_reference_on_msrvtt(w2v, encoder, captions):
    assert len(captions) == 1000
    strings = tf.constant(captions)
    ragged = encoder.ragged_ids(strings)
    assert ragged.dtype == tf.int32 and ragged.shape.rank == 2
    expect_ragged = [[i for i in (w2v.word_id(t) for t in python_tokenize(c))
                      if i] for c in captions]
    assert ragged.to_list() == expect_ragged
    for max_words in (20, 3):
        ids = encoder.word_ids(strings, max_words)
        assert ids.dtype == tf.int32 and ids.shape == (1000, max_words)
        expect = np.array([reference_ids(w2v, c, max_words)
                           for c in captions])
        np.testing.assert_array_equal(ids.numpy(), expect)
    # Some captions must be truncated and some padded for this to mean much.
    lengths = [len(r) for r in expect_ragged]
    assert min(lengths) < 3 < max(lengths)
    vecs = encoder.vectors(encoder.word_ids(strings, 20))
    assert vecs.shape == (1000, 20, 10) and vecs.dtype == tf.float32
    np.testing.assert_array_equal(vecs.numpy(),
                                  w2v.embedding_matrix()[expect_ragged_pad(
                                      expect_ragged, 20)])
    np.testing.assert_array_equal(encoder.vectors(tf.constant([0])), [[0] * 10])
    assert not encoder.embeddings.trainable
    assert "CPU" in encoder.embeddings.device


def expect_ragged_pad(rows, n):
    return np.array([r[:n] + [0] * (n - len(r[:n])) for r in rows])


def test_encoder_scalar_rank2_and_pad_ids(w2v, encoder):
    caption = "the man and the woman said it's the king of the world"
    one = encoder.word_ids(tf.constant(caption), 4)
    assert one.shape == (4,)
    assert one.numpy().tolist() == reference_ids(w2v, caption, 4)
    assert encoder.ragged_ids(tf.constant("zzz qqq")).shape == (0,)
    assert encoder.word_ids(tf.constant(""), 3).numpy().tolist() == [0, 0, 0]
    grid = tf.constant([["the man", "zzz"], ["", "of the world said"]])
    ids = encoder.word_ids(grid, 3)
    assert ids.shape == (2, 2, 3)
    assert ids.numpy().tolist() == [
        [reference_ids(w2v, s, 3) for s in row] for row in
        [["the man", "zzz"], ["", "of the world said"]]]
    padded = TextEncoder.pad_ids(tf.ragged.constant([[5, 6, 7], [], [1]]), 2)
    assert padded.numpy().tolist() == [[5, 6], [0, 0], [1, 0]]
    assert TextEncoder.pad_ids(tf.constant([4, 5]), 4).numpy().tolist() == [
        4, 5, 0, 0]
    rv = encoder.vectors(tf.ragged.constant([[1, 2], [0]]))
    assert isinstance(rv, tf.RaggedTensor)
    np.testing.assert_array_equal(rv[0].numpy(), w2v.vectors[:2])


def test_encoder_in_dataset_map(w2v, encoder, captions):
    expect = np.array([reference_ids(w2v, c, 20) for c in captions])
    ds = tf.data.Dataset.from_tensor_slices(captions[:300]).batch(64).map(
        lambda s: (encoder.word_ids(s, 20),
                   encoder.vectors(encoder.word_ids(s, 20))),
        num_parallel_calls=2)
    ids, vecs = zip(*[(a.numpy(), b.numpy()) for a, b in ds])
    np.testing.assert_array_equal(np.concatenate(ids), expect[:300])
    matrix = w2v.embedding_matrix()
    np.testing.assert_array_equal(np.concatenate(vecs), matrix[expect[:300]])
    # Per-caption (scalar) map, then batch.
    ds = tf.data.Dataset.from_tensor_slices(captions[:50]).map(
        lambda s: encoder.word_ids(s, 20)).batch(50)
    np.testing.assert_array_equal(next(iter(ds)).numpy(), expect[:50])
    # A ragged map result.
    ds = tf.data.Dataset.from_tensor_slices(captions[:10]).batch(5).map(
        encoder.ragged_ids)
    got = [row for batch in ds for row in batch.to_list()]
    assert got == [[i for i in r if i] for r in expect[:10].tolist()]


def test_encoder_with_distribute_datasets_from_function(w2v, encoder,
                                                        captions):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        with pytest.raises(UserInputError, match="outside strategy.scope"):
            TextEncoder(w2v)
    per_replica = 8
    texts = captions[:64]

    def dataset_fn(ctx):
        ds = tf.data.Dataset.from_tensor_slices(texts)
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        ds = ds.batch(ctx.get_per_replica_batch_size(per_replica * 2))
        return ds.map(lambda s: {"ids": encoder.word_ids(s, 20),
                                 "vec": encoder.vectors(
                                     encoder.word_ids(s, 20))})

    dist = strategy.distribute_datasets_from_function(dataset_fn)

    @tf.function
    def step(batch):
        def replica_fn(b):
            # Sum of the caption's word vectors: zeros for padding.
            return b["ids"], tf.reduce_sum(b["vec"], axis=1)
        return strategy.run(replica_fn, args=(batch,))

    matrix = w2v.embedding_matrix()
    got_ids, got_sums = [], []
    for batch in dist:
        ids, sums = step(batch)
        for a, b in zip(strategy.experimental_local_results(ids),
                        strategy.experimental_local_results(sums)):
            got_ids.append(a.numpy())
            got_sums.append(b.numpy())
    got_ids = np.concatenate(got_ids)
    expect = np.array([reference_ids(w2v, c, 20) for c in texts])
    assert got_ids.shape == (64, 20)
    np.testing.assert_array_equal(got_ids, expect)  # one pipeline: in order
    np.testing.assert_allclose(np.concatenate(got_sums),
                               matrix[expect].sum(axis=1), rtol=1e-6,
                               atol=1e-6)


def test_encoder_from_saved_and_ids_only(w2v, tmp_path, captions):
    d = str(tmp_path / "saved")
    w2v.select(limit=500).save(d)
    enc = TextEncoder.from_saved(d, embeddings=False)
    assert enc.vocab_size == 500 and enc.embeddings is None
    small = WordVectors.load_saved(d)
    expect = np.array([reference_ids(small, c, 20) for c in captions[:100]])
    np.testing.assert_array_equal(
        enc.word_ids(tf.constant(captions[:100]), 20).numpy(), expect)
    with pytest.raises(UserInputError, match="embeddings=False"):
        enc.vectors(tf.constant([1]))
    full = TextEncoder.from_saved(d)
    np.testing.assert_array_equal(full.embeddings.numpy(),
                                  small.embedding_matrix())
