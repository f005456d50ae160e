"""MIL-NCE weights and vocabulary: the released PyTorch model, the original
training's checkpoints, our own checkpoints, and the word dictionary.

Two PyTorch sources hold the same module (``s3dg.S3D`` with its
``text_module`` = ``Sentence_Embedding``):

* the release, ``s3d_howto100m.pth``: a plain state dict, trained on TPU
  with the space-to-depth stem (``conv1.conv1.weight`` [64, 24, 2, 4, 4]);
* the PyTorch training's ``epochNNNN.pth.tar``: ``{"state_dict": ...,
  "optimizer": ..., "scheduler": ..., "epoch": ...}`` with
  DistributedDataParallel's ``module.`` prefixes, no space-to-depth
  (``conv1.conv1.weight`` [64, 3, 3, 7, 7]).

`vidcore.torch_io.read_state_dict` unwraps both; `config_from_state_dict`
reads the architecture from the tensor shapes (stem, D, vocabulary and
word sizes) so a CLI can build the matching model before loading it.

The dictionary (``s3d_dict.npy`` of the release, ``dict.npy`` of the
training data) is a numpy array of words; word ``i`` of it has id
``i + 1`` (id 0 = padding). It is kept as ``vocab.txt`` (one word a line)
beside converted weights, and `load_vocabulary` turns it into the
`vidcore.text.TextEncoder` the readers take.
"""

import collections
import json
import os

import numpy as np
import tensorflow as tf

from howto.milnce_model import (TEXT_MODEL, VIDEO_MODEL, WORD_TABLE,
                                MilNCEConfig)
from vidcore import text as text_lib
from vidcore import torch_io, training
from vidcore.backbones.s3d import load_torchvision_weights
from vidcore.errors import UserInputError

CONFIG_FILE = "model_config.json"
VOCAB_FILE = text_lib.VOCAB_FILE  # the same one-word-a-line file
CHECKPOINT_NAME = "ckpt"
TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".tar")

TEXT_PREFIX = TEXT_MODEL + "."
# Stem input channels: RGB, or RGB after 2x2x2 space-to-depth.
_STEM_CHANNELS = {3: False, 24: True}
_SIZE_KEYS = ("conv1.conv1.weight", "fc.weight",
              f"{TEXT_PREFIX}{WORD_TABLE}.weight",
              f"{TEXT_PREFIX}fc1.weight")


# --------------------------------------------------------------- dictionary --

def read_dictionary(path, allow_pickle=False):
    """Reads the release's word dictionary (``s3d_dict.npy`` / ``dict.npy``).

    Args:
        path: a ``.npy`` file holding a 1-D array of words (word ``i`` has id
            ``i + 1``); any path ``tf.io.gfile`` can read.
        allow_pickle: also accept an object array (unpickling runs code:
            only for a trusted file). The released files are string arrays.

    Returns:
        list of str.

    Raises:
        UserInputError: the file is missing, not a ``.npy`` array of words,
            or an object array without ``allow_pickle``.
    """
    if not tf.io.gfile.exists(path):
        raise UserInputError(f"dictionary {path} does not exist")
    with tf.io.gfile.GFile(path, "rb") as f:
        try:
            words = np.load(f, allow_pickle=allow_pickle)
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise UserInputError(
                    f"{path}: the dictionary is an object array, readable "
                    f"only by unpickling (allow_pickle=True, trusted files "
                    f"only); expected a numpy string array") from None
            raise UserInputError(f"{path}: not a .npy array ({e})") from None
        except (OSError, EOFError) as e:
            raise UserInputError(f"{path}: not a .npy array ({e})") from None
    if not isinstance(words, np.ndarray) or words.ndim != 1:
        raise UserInputError(
            f"{path}: expected a 1-D array of words, got "
            f"{getattr(words, 'shape', type(words).__name__)}")
    out = []
    for i, word in enumerate(words.tolist()):
        if isinstance(word, bytes):
            word = word.decode("utf-8")
        if not isinstance(word, str):
            raise UserInputError(f"{path}: entry {i} is a "
                                 f"{type(word).__name__}, not a word")
        out.append(word)
    return out


def save_vocabulary(words, directory):
    """Writes ``words`` to ``<directory>/vocab.txt``, one a line (UTF-8),
    word ``i`` (0-based line) having id ``i + 1`` (the format of
    `vidcore.text.WordVectors.save`; here repeated words are kept).

    Returns:
        The file's path.

    Raises:
        UserInputError: a word is empty or holds a line break.
    """
    for i, word in enumerate(words):
        if not word or "\n" in word or "\r" in word:
            raise UserInputError(
                f"dictionary entry {i} ({word!r}) is empty or holds a line "
                f"break; it cannot be kept one word a line")
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, VOCAB_FILE)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write("".join(word + "\n" for word in words))
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path


def read_vocabulary(path):
    """The words of a ``vocab.txt`` (or of the one in directory ``path``)."""
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, VOCAB_FILE)
    if not tf.io.gfile.exists(path):
        raise UserInputError(
            f"vocabulary {path} does not exist (howto.convert_milnce "
            f"writes {VOCAB_FILE} beside the converted weights)")
    with tf.io.gfile.GFile(path, "rb") as f:
        try:
            data = f.read().decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserInputError(f"{path}: not UTF-8 at byte {e.start}") \
                from None
    if data and not data.endswith("\n"):
        data += "\n"
    return data.split("\n")[:-1]


def text_encoder(words):
    """A `vidcore.text.TextEncoder` (word ids only) giving word ``i`` the
    id ``i + 1``, as the release's ``word_to_token``.

    A word listed twice gets its LAST position's id, as in the release
    (its dict comprehension overwrites); the earlier positions become
    placeholders that no ``[\\w']+`` token can match.
    """
    last = {word: i for i, word in enumerate(words)}
    unique = [word if last[word] == i else f" duplicate {i}"
              for i, word in enumerate(words)]
    vectors = np.zeros((len(unique), 0), np.float32)  # ids only
    return text_lib.TextEncoder(text_lib.WordVectors(unique, vectors),
                                embeddings=False)


def load_word_table(word2vec_path, token_to_word_path=None):
    """The training's word table and its words.

    Args:
        word2vec_path: the original's ``word2vec.pth`` (a PyTorch tensor
            [rows, dim] whose row ``i + 1`` is word ``i`` of the dictionary,
            row 0 padding; ``.pth`` / ``.pt``), or word vectors that carry
            their own words (word2vec binary, GloVe / word2vec text, or a
            `vidcore.text.WordVectors.save` directory; row 0 is then zeros).
        token_to_word_path: the dictionary of a ``.pth`` table
            (``dict.npy``); ignored otherwise.

    Returns:
        (list of words, float32 table [rows, dim]) with rows >= words + 1.

    Raises:
        UserInputError: a file is missing or malformed, or the table has
            fewer rows than the dictionary needs.
    """
    if not tf.io.gfile.exists(word2vec_path):
        raise UserInputError(f"word table {word2vec_path} does not exist")
    if not is_torch_checkpoint(word2vec_path):
        vectors = text_lib.WordVectors.load(word2vec_path)
        return list(vectors.words), vectors.embedding_matrix()
    if not token_to_word_path:
        raise UserInputError(
            f"{word2vec_path} is a PyTorch word table without its words: "
            f"give its dictionary (dict.npy) too")
    table = _read_torch_tensor(word2vec_path)
    if table.ndim != 2:
        raise UserInputError(f"{word2vec_path}: expected a 2-D word table "
                             f"[rows, dim], got shape {table.shape}")
    words = read_dictionary(token_to_word_path)
    if len(words) + 1 > table.shape[0]:
        raise UserInputError(
            f"{token_to_word_path} has {len(words)} words but "
            f"{word2vec_path} only {table.shape[0]} rows (row 0 = padding)")
    return words, table


def _read_torch_tensor(path):
    """A ``torch.save``d tensor as float32 numpy (weights only)."""
    torch = torch_io.import_torch()
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            value = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for a bad file.
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise UserInputError(f"{path}: not a readable PyTorch file "
                             f"({type(e).__name__}: {first_line})") from e
    if not isinstance(value, torch.Tensor):
        raise UserInputError(f"{path}: holds a {type(value).__name__}, "
                             f"expected a tensor (the word table)")
    return value.detach().cpu().float().numpy()


def save_run_record(directory, cfg, words):
    """Writes ``model_config.json`` and ``vocab.txt`` beside a model's
    checkpoints, so evaluation builds the same model and TextEncoder."""
    save_config(cfg, directory)
    save_vocabulary(words, directory)


def load_vocabulary(path):
    """The TextEncoder of a saved ``vocab.txt`` (a file or its directory);
    create it outside any strategy scope."""
    return text_encoder(read_vocabulary(path))


# ---------------------------------------------------------- PyTorch weights --

def is_torch_checkpoint(path):
    return str(path).endswith(TORCH_SUFFIXES)


def read_state_dict(path):
    """A MIL-NCE PyTorch checkpoint (release or training) as numpy arrays,
    without wrappers and ``module.`` prefixes."""
    return torch_io.read_state_dict(
        path, expected="the state dict of the MIL-NCE S3D model")


def _shape(state_dict, key):
    if key not in state_dict:
        raise UserInputError(
            f"checkpoint has no tensor {key!r}; expected the state dict of "
            f"the MIL-NCE S3D model (keys {', '.join(_SIZE_KEYS)})")
    return tuple(int(d) for d in np.shape(state_dict[key]))


def config_from_state_dict(state_dict, sync_bn=False,
                           train_word_embeddings=False):
    """The MilNCEConfig of a MIL-NCE state dict's tensor shapes.

    Args:
        state_dict: {name: array} from :func:`read_state_dict`.
        sync_bn, train_word_embeddings: training settings (not stored in
            the checkpoint).

    Returns:
        MilNCEConfig: space-to-depth from the stem's input channels (24 vs
        3), D from ``fc``, vocabulary and word sizes from the word table,
        the hidden width from ``text_module.fc1``.

    Raises:
        UserInputError: a tensor is missing or has an unexpected shape.
    """
    stem = _shape(state_dict, "conv1.conv1.weight")
    if len(stem) != 5 or stem[1] not in _STEM_CHANNELS:
        raise UserInputError(
            f"checkpoint tensor 'conv1.conv1.weight' has shape {stem}; "
            f"expected [64, 3, 3, 7, 7] (RGB stem) or [64, 24, 2, 4, 4] "
            f"(space-to-depth stem)")
    fc = _shape(state_dict, "fc.weight")
    table = _shape(state_dict, f"{TEXT_PREFIX}{WORD_TABLE}.weight")
    fc1 = _shape(state_dict, f"{TEXT_PREFIX}fc1.weight")
    for key, shape in (("fc.weight", fc),
                       (f"{TEXT_PREFIX}{WORD_TABLE}.weight", table),
                       (f"{TEXT_PREFIX}fc1.weight", fc1)):
        if len(shape) != 2:
            raise UserInputError(f"checkpoint tensor {key!r} has shape "
                                 f"{shape}, expected a 2-D tensor")
    return MilNCEConfig(
        embedding_dim=fc[0], space_to_depth=_STEM_CHANNELS[stem[1]],
        vocab_size=table[0], word_dim=table[1], text_hidden=fc1[0],
        train_word_embeddings=train_word_embeddings, sync_bn=sync_bn)


def _parts(model):
    try:
        return model.get_layer(VIDEO_MODEL), model.get_layer(TEXT_MODEL)
    except ValueError:
        raise UserInputError(
            f"model {model.name!r} is not a MIL-NCE model (no sub-models "
            f"'{VIDEO_MODEL}' and '{TEXT_MODEL}'; build it with "
            f"howto.milnce_model.build_milnce_model)") from None


def _text_plan(text_net):
    """[(torch key, keras variable, transpose)] of the text module."""
    fc1, fc2 = text_net.get_layer("fc1"), text_net.get_layer("fc2")
    return [
        (f"{TEXT_PREFIX}{WORD_TABLE}.weight",
         text_net.get_layer(WORD_TABLE).embeddings, False),
        (f"{TEXT_PREFIX}fc1.weight", fc1.kernel, True),
        (f"{TEXT_PREFIX}fc1.bias", fc1.bias, False),
        (f"{TEXT_PREFIX}fc2.weight", fc2.kernel, True),
        (f"{TEXT_PREFIX}fc2.bias", fc2.bias, False),
    ]


def load_torch_state_dict(model, state_dict):
    """Copies a MIL-NCE PyTorch state dict into a model, all or nothing.

    The trunk and ``fc.*`` go through
    `vidcore.backbones.s3d.load_torchvision_weights` (conv kernels to
    [t, h, w, in, out], batch-norm statistics, gates); the text module's
    ``word_embd.weight`` is copied as is ([vocab_size, word_dim]) and its
    ``fc1`` / ``fc2`` Linear weights are transposed to Keras kernels.

    Args:
        model: a model from `howto.milnce_model.build_milnce_model` whose
            config matches (see :func:`config_from_state_dict`).
        state_dict: {name: array} from :func:`read_state_dict`.

    Returns:
        ``model``.

    Raises:
        UserInputError: listing the missing, unexpected and mis-shaped
            tensors; the model is unchanged.
    """
    video_net, text_net = _parts(model)
    plan = _text_plan(text_net)
    problems = []
    for key, variable, transpose in plan:
        want = tuple(int(d) for d in variable.shape)
        want = want[::-1] if transpose else want
        if key not in state_dict:
            problems.append(f"missing tensor {key}")
        elif tuple(np.shape(state_dict[key])) != want:
            problems.append(f"shape mismatch for {key}: expected {want} "
                            f"(torch layout), got "
                            f"{tuple(np.shape(state_dict[key]))}")
    known = {key for key, _, _ in plan}
    problems += [f"unexpected tensor {key}" for key in sorted(state_dict)
                 if key.startswith(TEXT_PREFIX) and key not in known]
    hint = ("; build the model from "
            "howto.milnce_weights.config_from_state_dict(state_dict)")
    if problems:
        raise UserInputError(
            "cannot load the PyTorch state dict into the MIL-NCE text "
            "module: " + "; ".join(problems) + hint)
    try:
        load_torchvision_weights(video_net, state_dict)
    except ValueError as e:
        raise UserInputError(str(e).replace("\n", "; ") + hint) from None
    for key, variable, transpose in plan:
        value = np.asarray(state_dict[key], np.float32)
        variable.assign(value.T if transpose else value)
    return model


# ------------------------------------------------------- converted / ours --

def save_config(cfg, directory):
    """Writes ``model_config.json`` (the MilNCEConfig) into directory."""
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2, sort_keys=True)


def load_config(directory):
    """The MilNCEConfig saved in ``directory`` (by howto.convert_milnce),
    or None when it holds no ``model_config.json``."""
    path = os.path.join(directory, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return MilNCEConfig.from_dict(json.load(f))


def pretrained_config(path):
    """The MilNCEConfig of pretrained weights, to build the model they fit:
    read from a PyTorch checkpoint's shapes, or from the
    ``model_config.json`` of a converted directory (of a checkpoint
    prefix's directory); None when the path names neither."""
    if is_torch_checkpoint(path):
        return config_from_state_dict(read_state_dict(path))
    directory = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
    return load_config(directory) if directory else None


def load_pretrained(model, path, state_dict=None):
    """Loads a MIL-NCE model's weights from ``path``.

    Args:
        model: a model from `howto.milnce_model.build_milnce_model` (same
            config as the weights: :func:`pretrained_config`).
        path: a PyTorch checkpoint (``.pth``, ``.pt``, ``.pth.tar``: the
            release or the original training), a ``.keras`` file, one of our
            checkpoint directories (the latest checkpoint: training or
            howto.convert_milnce output), or a checkpoint prefix.
        state_dict: the PyTorch file's contents when the caller has read
            them already (:func:`read_state_dict`), to read it once.

    Returns:
        The path that was loaded.

    Raises:
        UserInputError: the path does not exist or does not match the model.
    """
    path = str(path)
    if is_torch_checkpoint(path):
        if state_dict is None:
            state_dict = read_state_dict(path)
        load_torch_state_dict(model, state_dict)
        return path
    if path.endswith(".keras"):
        if not tf.io.gfile.exists(path):
            raise UserInputError(f"{path} does not exist")
        try:
            model.load_weights(path)
        except ValueError as e:
            raise UserInputError(f"{path} does not fit the model: "
                                 f"{str(e).splitlines()[0]}") from None
        return path
    try:
        if tf.io.gfile.isdir(path):
            return training.restore_model_weights(model, path)
        if tf.io.gfile.exists(path + ".index"):
            return training.restore_model_weights(model, None, path)
    except FileNotFoundError as e:
        raise UserInputError(str(e)) from None
    except AssertionError as e:  # assert_existing_objects_matched
        raise UserInputError(f"{path} does not fit the model (another "
                             f"configuration?): "
                             f"{str(e).splitlines()[0]}") from None
    raise UserInputError(f"{path}: not a PyTorch checkpoint (.pth, .pt, "
                         f".pth.tar), a .keras file, a checkpoint directory "
                         f"or a checkpoint prefix")


def check_dictionary(words, cfg, where):
    """Checks that every dictionary id (1..len(words)) has a table row.

    Args:
        words: the dictionary.
        cfg: the model's MilNCEConfig.
        where: the dictionary's path, for the message.

    Returns:
        Sorted words listed more than once (they keep their last id).

    Raises:
        UserInputError: the dictionary is longer than the table allows.
    """
    if len(words) + 1 > cfg.vocab_size:
        raise UserInputError(
            f"{where}: {len(words)} words need a word table of at least "
            f"{len(words) + 1} rows (id 0 = padding), the model has "
            f"{cfg.vocab_size}")
    return sorted(w for w, n in collections.Counter(words).items() if n > 1)
