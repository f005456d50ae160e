"""Word vectors and tokenisation of captions to word ids (HowTo100M, MIL-NCE).

Facts this module implements (HowTo100M and MIL-NCE text branch):

* Tokens are the matches of the Python regular expression ``[\\w']+`` on the
  caption as a ``str`` (so ``\\w`` is Unicode-aware), case-sensitive.
* Out-of-vocabulary words are dropped BEFORE truncation; the remaining word
  ids are truncated or zero-padded to ``max_words`` (20 in training).
* Word id 0 is padding / out-of-vocabulary and maps to a zero vector; the
  vocabulary's words have ids 1..V (id ``i + 1`` is ``words[i]``).

Two sides:

* :class:`WordVectors` (numpy): loads the word2vec C binary format (e.g.
  GoogleNews, 3 M words x 300, streamed in large chunks into one
  preallocated array), GloVe / word2vec text, and its own fast saved form
  (``vocab.txt`` + ``vectors.npy`` loaded with mmap).
* :func:`tokenize` and :class:`TextEncoder` (TensorFlow): the same
  tokenisation with TF string ops (RE2), a ``tf.lookup.StaticHashTable`` word
  -> id and the embedding matrix as a non-trainable CPU ``tf.Variable``; every
  method works eagerly and inside ``tf.data.Dataset.map``.

Tokenisation in TF versus Python: Python's ``\\w`` on ``str`` is exactly the
Unicode general categories L* (Lu, Ll, Lt, Lm, Lo) and N* (Nd, Nl, No) plus
``_`` (checked over every code point with Python 3.11), so the RE2 pattern
used here is ``[\\pL\\pN_']``.  RE2's ``\\w`` is ASCII-only and is NOT used.
Combining marks (Mn, Mc, e.g. the U+0301 of a decomposed "é") are not ``\\w``
in Python and are not in the RE2 class either, so both split there.  The one
residual difference is the Unicode version: characters that the running
Python's ``unicodedata`` does not know yet (category Cn, e.g. scripts added in
Unicode 15 when Python 3.11 ships Unicode 14) but that TensorFlow's RE2 tables
classify as letters or numbers are token characters in TF and separators in
Python.  Strings that are not valid UTF-8 are decoded with U+FFFD replacement
on both sides (``python_tokenize`` on bytes, ``tokenize`` via
``tf.strings.unicode_transcode``).
"""

import io
import re

import numpy as np
import tensorflow as tf

from vidcore import files
from vidcore.errors import DataError, UserInputError

TOKEN_PATTERN = r"[\w']+"
"""The reference Python pattern (``re``, str pattern, Unicode ``\\w``)."""

TF_SEPARATOR_PATTERN = r"[^\pL\pN_']+"
"""RE2 pattern of the runs of characters that separate tokens."""

VOCAB_FILE = "vocab.txt"
VECTORS_FILE = "vectors.npy"

FORMATS = ("auto", "word2vec_binary", "text", "saved")

_TOKEN_RE = re.compile(TOKEN_PATTERN)
_READ_CHUNK = 1 << 24          # bytes read per chunk from a binary file
_MAX_WORD_BYTES = 1 << 16      # a longer "word" means a corrupt file
_TEXT_BLOCK_ROWS = 1 << 16     # rows per block when the count is unknown
_ASSIGN_ROWS = 1 << 16         # rows copied per scatter into tf.Variable
_UNICODE_ERRORS = ("strict", "replace", "ignore")


# ----------------------------------------------------------------------------
# Python reference tokeniser
# ----------------------------------------------------------------------------

def python_tokenize(text):
    """The reference tokeniser: ``re.findall(r"[\\w']+", str(text))``.

    Args:
        text: a caption; ``bytes`` are decoded as UTF-8 with U+FFFD
            replacement (as ``tokenize`` does), anything else goes through
            ``str()`` as in the original code (so a NaN caption gives
            ``["nan"]``).

    Returns:
        list of str tokens, case preserved.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    return _TOKEN_RE.findall(str(text))


# ----------------------------------------------------------------------------
# numpy side: WordVectors
# ----------------------------------------------------------------------------

def _open_binary(path):
    """Opens ``path`` (any tf.io.gfile filesystem) for binary reading,
    gunzipping when it starts with the gzip magic bytes."""
    with files.open_binary(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return files.open_gzip(path)
    if files.is_url(path):
        return files.open_binary(path, "rb")
    return open(path, "rb", buffering=1 << 20)


def _check_unicode_errors(unicode_errors):
    if unicode_errors not in _UNICODE_ERRORS:
        raise UserInputError(f"unicode_errors must be one of {_UNICODE_ERRORS}"
                             f", got {unicode_errors!r}")


def _vocabulary_set(vocabulary):
    if vocabulary is None:
        return None
    if isinstance(vocabulary, (str, bytes)):
        raise UserInputError("vocabulary must be an iterable of words, not a "
                             "single string")
    return set(str(w) for w in vocabulary)


def _check_limit(limit):
    if limit is None:
        return None
    limit = int(limit)
    if limit < 0:
        raise UserInputError(f"limit must be >= 0 or None, got {limit}")
    return limit


class WordVectors:
    """A vocabulary and its vectors; id ``i + 1`` is ``words[i]``, id 0 is
    padding / out-of-vocabulary.

    Args:
        words: sequence of distinct str, V of them.
        vectors: float array [V, dim] (converted to float32; a read-only
            memmap is kept as is when already float32).

    Attributes:
        words: list of str.
        vectors: float32 array [V, dim].

    Raises:
        UserInputError: shapes disagree, or a word appears twice.
    """

    def __init__(self, words, vectors):
        words = [str(w) for w in words]
        vectors = np.asanyarray(vectors)  # keeps an np.memmap a memmap
        if vectors.ndim != 2:
            raise UserInputError(f"vectors must be 2-D [V, dim], got shape "
                                 f"{vectors.shape}")
        if vectors.shape[0] != len(words):
            raise UserInputError(f"{len(words)} words but {vectors.shape[0]} "
                                 f"vectors")
        if len(set(words)) != len(words):
            seen = set()
            for i, w in enumerate(words):
                if w in seen:
                    raise UserInputError(f"word {w!r} appears twice (second "
                                         f"time at index {i}); words must be "
                                         f"distinct")
                seen.add(w)
        self.words = words
        self.vectors = vectors.astype(np.float32, copy=False)
        self._index = None

    # -- basic properties ---------------------------------------------------

    @property
    def size(self):
        """Number of words V (ids 1..V)."""
        return len(self.words)

    @property
    def dim(self):
        """Vector size."""
        return int(self.vectors.shape[1])

    def __len__(self):
        return self.size

    def __contains__(self, word):
        return word in self.index

    def __repr__(self):
        return f"WordVectors(size={self.size}, dim={self.dim})"

    @property
    def index(self):
        """dict word -> id (1..V), built on first use."""
        if self._index is None:
            self._index = {w: i + 1 for i, w in enumerate(self.words)}
        return self._index

    def word_id(self, word):
        """Returns the id of ``word`` (1..V), or 0 when out of vocabulary."""
        return self.index.get(word, 0)

    def embedding_matrix(self):
        """The lookup table with the padding row.

        Returns:
            float32 array [V + 1, dim]; row 0 is zeros, row i + 1 is
            ``vectors[i]``.
        """
        out = np.zeros((self.size + 1, self.dim), np.float32)
        out[1:] = self.vectors
        return out

    def select(self, vocabulary=None, limit=None):
        """Keeps a subset of the words, in their current order.

        Args:
            vocabulary: iterable of str to keep (others dropped), or None.
            limit: consider only the first ``limit`` words, or None.

        Returns:
            a new WordVectors (``self`` when nothing is dropped).
        """
        keep = _vocabulary_set(vocabulary)
        limit = _check_limit(limit)
        n = self.size if limit is None else min(limit, self.size)
        if keep is None:
            if n == self.size:
                return self
            return WordVectors(self.words[:n], np.array(self.vectors[:n]))
        rows = [i for i in range(n) if self.words[i] in keep]
        return WordVectors([self.words[i] for i in rows],
                           np.array(self.vectors[rows], np.float32))

    # -- loading --------------------------------------------------------------

    @classmethod
    def load(cls, path, format="auto", vocabulary=None, limit=None,
             unicode_errors="replace"):
        """Loads word vectors, choosing the reader by content.

        Args:
            path: a word2vec binary file, a GloVe / word2vec text file (either
                optionally gzipped), or a directory written by ``save``.
            format: 'auto' (a directory is 'saved'; a file whose first line is
                "V dim" followed by raw float bytes is 'word2vec_binary';
                anything else is 'text'), 'word2vec_binary', 'text' or
                'saved'.
            vocabulary: iterable of str; keep only these words (None: all).
            limit: read only the first ``limit`` words of the file (None:
                all); applied before ``vocabulary``.
            unicode_errors: how undecodable word bytes are handled, see
                ``from_word2vec_binary``.

        Returns:
            WordVectors.

        Raises:
            UserInputError: unknown format or missing path.
            DataError: the file does not parse (names file and place).
        """
        if format not in FORMATS:
            raise UserInputError(f"unknown word-vector format {format!r}; "
                                 f"expected one of {', '.join(FORMATS)}")
        if not tf.io.gfile.exists(path):
            raise UserInputError(f"word-vector path {path!r} does not exist")
        if format == "auto":
            format = ("saved" if tf.io.gfile.isdir(path)
                      else _sniff_format(path))
        if format == "saved":
            return cls.load_saved(path).select(vocabulary, limit)
        if format == "word2vec_binary":
            return cls.from_word2vec_binary(path, vocabulary, limit,
                                            unicode_errors)
        return cls.from_glove_text(path, vocabulary, limit, unicode_errors)

    @classmethod
    def from_word2vec_binary(cls, path, vocabulary=None, limit=None,
                             unicode_errors="replace"):
        """Reads the word2vec C binary format, streaming.

        Layout: a header line ``"V dim\\n"``, then for each of the V words the
        word's bytes up to a space, the space, ``dim`` little-endian float32,
        and optionally ``"\\n"`` (the word2vec C tool writes it, gensim does
        not; newlines before a word are skipped). The file (optionally
        gzipped) is read in 16 MiB chunks and the vectors are copied straight
        into one preallocated float32 array, so GoogleNews (3 M x 300,
        3.6 GB) needs about 3.6 GB plus the words.

        Words are decoded as UTF-8. ``unicode_errors`` defaults to 'replace'
        (gensim's default is 'strict'): a word with invalid bytes (the C tool
        may cut a multi-byte character at its length limit) cannot equal any
        token of valid text anyway, so the load should not fail on it; pass
        'strict' to get an error naming the word instead. When two entries
        decode to the same word (a duplicate in the file, or two invalid words
        that both become U+FFFD replacements), the FIRST one is kept and later
        ones are skipped.

        Args:
            path: the file.
            vocabulary: iterable of str; keep only these words (None: all).
                Restricting GoogleNews to the words of one's captions keeps
                the table small.
            limit: read only the first ``limit`` entries of the file (None:
                all); applied before ``vocabulary``.
            unicode_errors: 'replace', 'strict' or 'ignore'.

        Returns:
            WordVectors with the kept words in file order.

        Raises:
            DataError: bad header, or a truncated / corrupt file: the message
                names the file, the 0-based word index and the byte offset.
        """
        _check_unicode_errors(unicode_errors)
        keep = _vocabulary_set(vocabulary)
        limit = _check_limit(limit)
        with _open_binary(path) as f:
            header = f.readline(256)
            num_words, dim = _parse_header(header)
            if num_words is None:
                raise DataError(f"{path}: not a word2vec binary file: the "
                                f"first line must be 'V dim', got "
                                f"{header[:80]!r}")
            words, vectors = _read_word2vec_body(
                f, path, num_words, dim, keep, limit, unicode_errors,
                offset=len(header))
        return cls._trusted(words, vectors)

    @classmethod
    def from_glove_text(cls, path, vocabulary=None, limit=None,
                        unicode_errors="replace"):
        """Reads GloVe text (``word v1 ... vdim`` per line, no header) or the
        word2vec text format (the same with a first line ``"V dim"``).

        Fields are separated by single spaces; trailing whitespace is
        ignored. ``dim`` comes from the header, else from the first line.
        Because a few GloVe 840B words contain spaces, each line is split from
        the right into the word and exactly ``dim`` values; a line whose
        "word" ends in a number is reported as having too many values.
        Duplicates keep the first occurrence; words are decoded as in
        ``from_word2vec_binary``.

        Args:
            path: the file (optionally gzipped).
            vocabulary: iterable of str; keep only these words (None: all).
            limit: read only the first ``limit`` word lines (None: all);
                applied before ``vocabulary``.
            unicode_errors: 'replace', 'strict' or 'ignore'.

        Returns:
            WordVectors with the kept words in file order.

        Raises:
            DataError: a line that does not parse; names ``file:line``.
        """
        _check_unicode_errors(unicode_errors)
        keep = _vocabulary_set(vocabulary)
        limit = _check_limit(limit)
        with _open_binary(path) as f:
            words, vectors = _read_text(f, path, keep, limit, unicode_errors)
        return cls._trusted(words, vectors)

    @classmethod
    def _trusted(cls, words, vectors):
        """Builds an instance from loader output (already deduplicated)."""
        self = cls.__new__(cls)
        self.words = words
        self.vectors = vectors
        self._index = None
        return self

    # -- own saved form -------------------------------------------------------

    def save(self, directory):
        """Writes ``vocab.txt`` (UTF-8, one word per line, ``\\n`` endings) and
        ``vectors.npy`` (float32 [V, dim]) into ``directory``; each file is
        written under a temporary name and then renamed.

        Args:
            directory: created if missing.

        Raises:
            UserInputError: a word contains "\\n" or "\\r" (it could not be
                one line of vocab.txt); no file is written then.
        """
        for i, w in enumerate(self.words):
            if "\n" in w or "\r" in w:
                raise UserInputError(
                    f"cannot save word {i} ({w!r}): it contains a line break "
                    f"and vocab.txt holds one word per line; drop it with "
                    f"select() first")
        tf.io.gfile.makedirs(directory)
        vocab_path = f"{directory.rstrip('/')}/{VOCAB_FILE}"
        vectors_path = f"{directory.rstrip('/')}/{VECTORS_FILE}"
        data = "".join(w + "\n" for w in self.words).encode("utf-8")
        with files.open_binary(vocab_path + ".tmp", "wb") as f:
            f.write(data)
        with files.open_binary(vectors_path + ".tmp", "wb") as f:
            np.save(f, np.ascontiguousarray(self.vectors, np.float32))
        tf.io.gfile.rename(vectors_path + ".tmp", vectors_path,
                           overwrite=True)
        tf.io.gfile.rename(vocab_path + ".tmp", vocab_path, overwrite=True)

    @classmethod
    def load_saved(cls, directory, mmap=True):
        """Loads what ``save`` wrote.

        Args:
            directory: the directory given to ``save``.
            mmap: memory-map ``vectors.npy`` read-only (fast, no copy) rather
                than reading it into memory.

        Returns:
            WordVectors (``vectors`` is a read-only memmap when ``mmap``).

        Raises:
            DataError: missing files, vocab.txt not UTF-8, a repeated word, or
                a word count that differs from the number of vectors.
        """
        vocab_path = f"{directory.rstrip('/')}/{VOCAB_FILE}"
        vectors_path = f"{directory.rstrip('/')}/{VECTORS_FILE}"
        for p in (vocab_path, vectors_path):
            if not files.is_file(p):
                raise DataError(f"{p}: missing; expected a directory written "
                                f"by WordVectors.save ({VOCAB_FILE} and "
                                f"{VECTORS_FILE})")
        with files.open_binary(vocab_path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{vocab_path}: not UTF-8 at byte {e.start}") \
                from None
        words = text.split("\n")
        if words and words[-1] == "":
            words.pop()
        if files.is_url(vectors_path):  # no memory map off the local disk
            with files.open_binary(vectors_path, "rb") as f:
                vectors = np.load(io.BytesIO(f.read()))
        else:
            vectors = np.load(vectors_path, mmap_mode="r" if mmap else None)
        if vectors.ndim != 2 or vectors.dtype != np.float32:
            raise DataError(f"{vectors_path}: expected float32 [V, dim], got "
                            f"{vectors.dtype} {vectors.shape}")
        if vectors.shape[0] != len(words):
            raise DataError(f"{directory}: {VOCAB_FILE} has {len(words)} "
                            f"words but {VECTORS_FILE} has {vectors.shape[0]}"
                            f" vectors")
        try:
            return cls(words, vectors)
        except UserInputError as e:
            raise DataError(f"{vocab_path}: {e}") from None


def _parse_header(line):
    """Returns (V, dim) from a b"V dim" line, or (None, None)."""
    fields = line.split()
    if len(fields) != 2 or not all(x.isdigit() for x in fields):
        return None, None
    num_words, dim = int(fields[0]), int(fields[1])
    if dim <= 0:
        return None, None
    return num_words, dim


def _sniff_format(path):
    """'word2vec_binary' or 'text', from the first bytes of the file."""
    with _open_binary(path) as f:
        head = f.read(1 << 16)
    first, _, rest = head.partition(b"\n")
    num_words, dim = _parse_header(first)
    if num_words is None:
        return "text"
    space = rest.find(b" ")
    if space < 0:
        return "text"
    sample = rest[space + 1:space + 1 + min(4 * dim, 64)]
    text_bytes = set(b"0123456789.-+eE \t\r\nnaifNAIF")
    return ("text" if sample and all(b in text_bytes for b in sample)
            else "word2vec_binary")


def _read_word2vec_body(f, path, num_words, dim, keep, limit, unicode_errors,
                        offset):
    """Parses the V entries after the header (see from_word2vec_binary)."""
    row_bytes = 4 * dim
    n_read = num_words if limit is None else min(num_words, limit)
    capacity = n_read if keep is None else min(n_read, len(keep))
    out = np.empty((capacity, dim), dtype="<f4")
    out_bytes = memoryview(out.reshape(-1)).cast("B")  # [capacity*dim*4] bytes
    words = []
    seen = set()
    buf = b""
    view = memoryview(buf)
    pos = 0          # parse position in buf
    base = offset    # file offset of buf[0]
    eof = False

    def corrupt(k, reason):
        return DataError(f"{path}: word2vec binary file is truncated or "
                         f"corrupt at word {k} of {num_words} (0-based; byte "
                         f"offset {base + pos}): {reason}")

    for k in range(n_read):
        while True:
            # Skip the optional newline(s) that end the previous entry.
            while pos < len(buf) and buf[pos] == 0x0A:
                pos += 1
            space = buf.find(b" ", pos, pos + _MAX_WORD_BYTES + 1)
            if space >= 0 and space + 1 + row_bytes <= len(buf):
                break
            if space < 0 and len(buf) - pos > _MAX_WORD_BYTES:
                raise corrupt(k, f"no space within {_MAX_WORD_BYTES} bytes "
                                 f"(wrong header dim?)")
            if eof:
                raise corrupt(k, "unexpected end of file" + (
                    f" inside the vector of {buf[pos:space]!r}"
                    if space >= 0 else ""))
            chunk = f.read(_READ_CHUNK)
            eof = not chunk
            view.release()
            base += pos
            buf = buf[pos:] + chunk
            view = memoryview(buf)
            pos = 0
        raw = buf[pos:space]
        if not raw:
            raise corrupt(k, "empty word")
        try:
            word = raw.decode("utf-8", errors=unicode_errors)
        except UnicodeDecodeError as e:
            raise corrupt(k, f"word {raw!r} is not UTF-8 ({e.reason}); pass "
                             f"unicode_errors='replace' to accept it") from None
        start = space + 1
        pos = start + row_bytes
        if (keep is not None and word not in keep) or word in seen:
            continue
        seen.add(word)
        j = len(words)
        words.append(word)
        out_bytes[j * row_bytes:(j + 1) * row_bytes] = view[start:pos]
    if limit is None or limit >= num_words:
        rest = buf[pos:] + f.read(1 << 20)
        if rest.strip():
            raise DataError(f"{path}: more data after the {num_words} words "
                            f"announced by the header (byte offset "
                            f"{base + pos}); the header or the file is wrong")
    view.release()
    out_bytes.release()
    vectors = out[:len(words)].astype(np.float32, copy=False)  # [V', dim]
    return words, vectors


def _read_text(f, path, keep, limit, unicode_errors):
    """Parses GloVe / word2vec text lines (see from_glove_text)."""
    first = f.readline()
    num_words, dim = _parse_header(first)
    lineno = 1
    pending = None
    if num_words is None:
        fields = first.rstrip().split(b" ")
        if len(fields) < 2:
            raise DataError(f"{path}:1: expected 'word v1 ... vdim' or a "
                            f"'V dim' header, got {first[:80]!r}")
        dim = len(fields) - 1
        pending = first
        lineno = 0
    capacity = None
    if num_words is not None:
        capacity = num_words
    if limit is not None:
        capacity = limit if capacity is None else min(capacity, limit)
    if keep is not None and capacity is not None:
        capacity = min(capacity, len(keep))
    block_rows = capacity if capacity is not None else _TEXT_BLOCK_ROWS
    blocks = [np.empty((block_rows, dim), np.float32)]
    filled = 0       # rows used in blocks[-1]
    words = []
    seen = set()
    n_lines = 0

    def lines():
        if pending is not None:
            yield pending
        yield from f

    for line in lines():
        lineno += 1
        if limit is not None and n_lines >= limit:
            break
        line = line.rstrip()
        if not line:
            if num_words is not None and n_lines >= num_words:
                continue
            raise DataError(f"{path}:{lineno}: empty line; expected 'word v1 "
                            f"... v{dim}'")
        n_lines += 1
        parts = line.rsplit(b" ", dim)
        if len(parts) != dim + 1 or not parts[0]:
            raise DataError(f"{path}:{lineno}: expected a word and {dim} "
                            f"values separated by spaces, got "
                            f"{len(line.split())} fields")
        raw = parts[0]
        if b" " in raw and _is_number(raw.rsplit(b" ", 1)[1]):
            raise DataError(f"{path}:{lineno}: more than {dim} values after "
                            f"the word")
        try:
            word = raw.decode("utf-8", errors=unicode_errors)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{lineno}: word {raw!r} is not UTF-8 "
                            f"({e.reason}); pass unicode_errors='replace' to "
                            f"accept it") from None
        if (keep is not None and word not in keep) or word in seen:
            continue
        if filled == blocks[-1].shape[0]:
            blocks.append(np.empty((_TEXT_BLOCK_ROWS, dim), np.float32))
            filled = 0
        try:
            blocks[-1][filled] = parts[1:]
        except ValueError as e:
            raise DataError(f"{path}:{lineno}: bad value ({e})") from None
        filled += 1
        seen.add(word)
        words.append(word)
    if num_words is not None and limit is None and n_lines != num_words:
        raise DataError(f"{path}: the header announces {num_words} words but "
                        f"the file has {n_lines}")
    last = blocks[-1]
    blocks[-1] = last[:filled]
    if len(blocks) > 1:
        vectors = np.concatenate(blocks)
    else:  # copy a partly used block so its unused rows are freed
        vectors = last if filled == last.shape[0] else last[:filled].copy()
    return words, vectors  # vectors: [V', dim]


def _is_number(b):
    try:
        float(b)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------
# TensorFlow side
# ----------------------------------------------------------------------------

def tokenize(strings):
    """Splits captions into ``[\\w']+`` tokens with TF string ops.

    Equal to :func:`python_tokenize` elementwise (see the module docstring for
    the one Unicode-version difference). Invalid UTF-8 is first replaced by
    U+FFFD, which separates tokens.

    Args:
        strings: tf.string tensor of any static rank; typically [N] captions
            or a scalar caption.

    Returns:
        tf.RaggedTensor [..., None] of tf.string tokens (for a scalar: a 1-D
        tf.string Tensor [None]).
    """
    strings = tf.convert_to_tensor(strings, tf.string)
    clean = tf.strings.unicode_transcode(
        strings, input_encoding="UTF-8", output_encoding="UTF-8",
        errors="replace", replacement_char=0xFFFD)
    spaced = tf.strings.regex_replace(clean, TF_SEPARATOR_PATTERN, " ")
    # Only ASCII spaces separate the remaining tokens, so a whitespace split
    # (which also drops the empty pieces) returns exactly the tokens.
    return tf.strings.split(spaced)


class TextEncoder(tf.Module):
    """Captions -> word ids -> word vectors, in TensorFlow.

    Holds a ``tf.lookup.StaticHashTable`` word -> id (default 0) and, unless
    ``embeddings=False``, the matrix [V + 1, dim] (row 0 zeros) as a
    non-trainable ``tf.Variable`` on the CPU, filled in chunks of rows so the
    3.6 GB GoogleNews matrix is never a graph constant (2 GB limit) nor held
    twice. Every method works eagerly and inside ``tf.data.Dataset.map``.

    Create the encoder OUTSIDE any ``tf.distribute`` strategy scope: inside
    one the matrix would become a mirrored variable copied to every replica.
    Datasets built by ``strategy.distribute_datasets_from_function`` may use
    it (the table and the variable stay on the host CPU).

    Args:
        word_vectors: a WordVectors.
        embeddings: also build the embedding matrix (False: ids only).
        name: module name.

    Raises:
        UserInputError: created inside a non-default strategy scope, or an
            empty vocabulary.
    """

    def __init__(self, word_vectors, embeddings=True, name="text_encoder"):
        super().__init__(name=name)
        if tf.distribute.has_strategy():
            raise UserInputError(
                "create TextEncoder outside strategy.scope(): inside it the "
                "embedding matrix would be mirrored onto every replica")
        if word_vectors.size == 0:
            raise UserInputError("TextEncoder needs at least one word")
        self.vocab_size = word_vectors.size
        self.dim = word_vectors.dim
        with tf.init_scope(), tf.device("/CPU:0"):
            keys = tf.constant(word_vectors.words, dtype=tf.string)  # [V]
            ids = tf.range(1, self.vocab_size + 1, dtype=tf.int32)  # [V]
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(keys, ids), default_value=0)
            del keys, ids
            self.embeddings = None
            if embeddings:
                self.embeddings = tf.Variable(
                    tf.zeros([self.vocab_size + 1, self.dim], tf.float32),
                    trainable=False, name="word_embeddings")
                # Row scatters update the buffer in place (a sliced assign
                # would copy the whole 3.6 GB matrix on write).
                vecs = word_vectors.vectors
                for a in range(0, self.vocab_size, _ASSIGN_ROWS):
                    b = min(a + _ASSIGN_ROWS, self.vocab_size)
                    chunk = np.ascontiguousarray(vecs[a:b], np.float32)
                    self.embeddings.scatter_update(tf.IndexedSlices(
                        chunk, tf.range(a + 1, b + 1)))  # rows a+1..b

    @classmethod
    def from_saved(cls, directory, embeddings=True, name="text_encoder"):
        """Builds the encoder from a directory written by
        ``WordVectors.save`` (vectors memory-mapped while copying).

        Args:
            directory: the saved directory.
            embeddings: also build the embedding matrix.
            name: module name.

        Returns:
            TextEncoder.
        """
        return cls(WordVectors.load_saved(directory), embeddings=embeddings,
                   name=name)

    @staticmethod
    def tokenize(strings):
        """Same as the module-level :func:`tokenize`."""
        return tokenize(strings)

    def ragged_ids(self, strings):
        """Word ids of each caption, out-of-vocabulary words dropped.

        Args:
            strings: tf.string tensor of static rank r (usually [N]).

        Returns:
            int32 tf.RaggedTensor [..., None] (for a scalar caption: an int32
            Tensor [None]).
        """
        tokens = tokenize(strings)
        if isinstance(tokens, tf.RaggedTensor):
            ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
            return tf.ragged.boolean_mask(ids, ids > 0)  # [..., None]
        ids = self.table.lookup(tokens)  # [None]
        return tf.boolean_mask(ids, ids > 0)

    def word_ids(self, strings, max_words):
        """Fixed-length word ids: OOV dropped, then truncated or zero-padded.

        Args:
            strings: tf.string tensor of static rank r (usually [N]).
            max_words: words kept per caption (20 in training, 30 in the
                MIL-NCE evaluation).

        Returns:
            int32 Tensor [..., max_words] (strings' shape + [max_words]).
        """
        return self.pad_ids(self.ragged_ids(strings), max_words)

    @staticmethod
    def pad_ids(ragged_ids, max_words):
        """Truncates or zero-pads the last (ragged) dimension to max_words.

        Args:
            ragged_ids: int RaggedTensor [..., None], or a 1-D int Tensor
                (the ids of one caption).
            max_words: output length.

        Returns:
            Tensor [..., max_words] of the same dtype.
        """
        max_words = int(max_words)
        if max_words < 0:
            raise UserInputError(f"max_words must be >= 0, got {max_words}")
        if isinstance(ragged_ids, tf.RaggedTensor):
            shape = [None] * (ragged_ids.shape.rank - 1) + [max_words]
            return ragged_ids.to_tensor(default_value=0, shape=shape)
        ids = tf.convert_to_tensor(ragged_ids)
        if ids.shape.rank != 1:
            raise UserInputError(f"pad_ids expects a RaggedTensor or a 1-D "
                                 f"tensor, got shape {ids.shape}")
        ids = ids[:max_words]  # [<= max_words]
        ids = tf.pad(ids, [[0, max_words - tf.shape(ids)[0]]])
        return tf.ensure_shape(ids, [max_words])  # [max_words]

    def vectors(self, ids):
        """Word vectors of ids; id 0 gives zeros.

        Args:
            ids: int Tensor (any shape) or RaggedTensor of word ids in 0..V.

        Returns:
            float32 [..., dim] (ragged when ids is ragged).
        """
        if self.embeddings is None:
            raise UserInputError("this TextEncoder was built with "
                                 "embeddings=False")
        return tf.gather(self.embeddings, ids)  # ids.shape + [dim]
