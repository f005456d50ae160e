"""MIL-NCE text-video model: S3D-G video network + the release's text branch.

MIL-NCE (Miech et al., CVPR 2020, "End-to-End Learning of Visual
Representations from Uncurated Instructional Videos") trains a video
network and a sentence encoder from scratch on HowTo100M so that a clip's
embedding scores highest with its own narration. Both halves are
functional sub-models of one Keras model, so a caller can run either alone
(`model.get_layer("s3dg")`: clips -> ``mixed_5c`` / ``video_embedding``;
`model.get_layer("text_module")`: word ids -> ``text_embedding``):

* video: `vidcore.backbones.s3d.s3dg` (S3D-G trunk, ``mixed_5c`` 1024-d,
  ``fc`` -> D);
* text, as the released ``Sentence_Embedding``: a word table
  [vocab_size, word_dim] (row 0 = padding, frozen unless
  ``train_word_embeddings``), Dense ``text_hidden`` + ReLU, max over ALL
  word positions (padding slots included, as the release: a padding id
  contributes ``relu(W e_0 + b)``), Dense D.

Layer names mirror the PyTorch module names (``text_module.word_embd``,
``text_module.fc1``, ``text_module.fc2``; the trunk's as in `s3dg`) so that
`howto.milnce_weights` maps a release state dict by name.
"""

import dataclasses
import math

import keras
import numpy as np

from vidcore.backbones.s3d import s3dg
from vidcore.config import dataclass_from_dict
from vidcore.errors import UserInputError
from vidcore.layers.axes import MergeLeadingAxes, SplitLeadingAxis
from vidcore.layers.embedding import torch_linear_initializer

VIDEO_INPUT = "video"
TEXT_INPUT = "text"
VIDEO_EMBEDDING = "video_embedding"
MIXED_5C = "mixed_5c"
TEXT_EMBEDDING = "text_embedding"
VIDEO_MODEL = "s3dg"
TEXT_MODEL = "text_module"
WORD_TABLE = "word_embd"


@dataclasses.dataclass
class MilNCEConfig:
    """Architecture settings of the MIL-NCE model.

    Attributes:
        embedding_dim: D, the joint embedding size (512 in the release).
        space_to_depth: the space-to-depth stem of the released TPU-trained
            weights (the PyTorch training code trains without it).
        vocab_size: rows of the word table INCLUDING row 0 (padding): the
            dictionary's words + 1 (66,250 in the release).
        word_dim: word-vector size (300, word2vec).
        text_hidden: width of the text branch's hidden layer (2048).
        train_word_embeddings: train the word table too (the original keeps
            it frozen).
        sync_bn: synchronise batch-norm statistics across replicas.
    """

    embedding_dim: int = 512
    space_to_depth: bool = False
    vocab_size: int = 66250
    word_dim: int = 300
    text_hidden: int = 2048
    train_word_embeddings: bool = False
    sync_bn: bool = False

    def __post_init__(self):
        for name in ("embedding_dim", "vocab_size", "word_dim",
                     "text_hidden"):
            value = getattr(self, name)
            if (isinstance(value, bool)
                    or not isinstance(value, (int, np.integer)) or value < 1):
                raise UserInputError(
                    f"MilNCEConfig.{name} must be a positive int, got "
                    f"{value!r}")
        if self.vocab_size < 2:
            raise UserInputError(
                f"MilNCEConfig.vocab_size counts the padding row 0 too and "
                f"must be >= 2, got {self.vocab_size}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return dataclass_from_dict(cls, values)


def build_text_module(cfg, name=TEXT_MODEL):
    """The release's sentence encoder as a functional model.

    Args:
        cfg: MilNCEConfig.
        name: model name.

    Returns:
        keras.Model mapping int word ids [N, L] (L may vary between calls)
        to float32 embeddings [N, D].
    """
    ids = keras.Input((None,), dtype="int32", name="word_ids")
    words = keras.layers.Embedding(
        cfg.vocab_size, cfg.word_dim,
        # nn.Embedding's default N(0, 1); the real table is loaded.
        embeddings_initializer=keras.initializers.RandomNormal(0.0, 1.0),
        trainable=cfg.train_word_embeddings, name=WORD_TABLE)(ids)
    # [N, L, word_dim] -> [N, L, text_hidden]
    hidden = keras.layers.Dense(
        cfg.text_hidden, name="fc1",
        kernel_initializer=torch_linear_initializer(cfg.word_dim),
        bias_initializer=torch_linear_initializer(cfg.word_dim))(words)
    hidden = keras.layers.ReLU(name="relu1")(hidden)
    # Max over every word slot, padding included: [N, L, H] -> [N, H]
    sentence = keras.layers.GlobalMaxPooling1D(name="max_over_words")(hidden)
    embedding = keras.layers.Dense(
        cfg.embedding_dim, dtype="float32", name="fc2",
        kernel_initializer=torch_linear_initializer(cfg.text_hidden),
        bias_initializer=torch_linear_initializer(cfg.text_hidden))(sentence)
    return keras.Model(ids, embedding, name=name)


def build_milnce_model(cfg):
    """Builds the MIL-NCE model.

    Args:
        cfg: MilNCEConfig.

    Returns:
        A functional keras.Model named "milnce" with inputs
        ``{"video": float32 [B, T, H, W, 3] in [0, 1], "text": int32
        [B, K, L] word ids}`` and float32 outputs ``{"video_embedding":
        [B, D], "mixed_5c": [B, 1024], "text_embedding": [B, K, D]}``;
        its sub-models are ``get_layer("s3dg")`` and
        ``get_layer("text_module")``. T, H, W, K and L may vary between
        calls (with space-to-depth T, H and W must be even).
    """
    if not isinstance(cfg, MilNCEConfig):
        raise TypeError(f"expected a MilNCEConfig, got {type(cfg).__name__}")
    video = keras.Input((None, None, None, 3), name=VIDEO_INPUT)
    text = keras.Input((None, None), dtype="int32", name=TEXT_INPUT)
    video_net = s3dg(embedding_dim=cfg.embedding_dim,
                     space_to_depth=cfg.space_to_depth,
                     input_shape=(None, None, None, 3), sync_bn=cfg.sync_bn,
                     name=VIDEO_MODEL)
    text_net = build_text_module(cfg)
    video_out = video_net(video)
    # [B, K, L] -> [B * K, L]
    flat_ids = MergeLeadingAxes(name="merge_candidates")(text)
    # [B * K, L] -> [B * K, D]
    flat_text = text_net(flat_ids)
    # [B * K, D] -> [B, K, D]
    text_embedding = SplitLeadingAxis(name="split_candidates",
                                      dtype="float32")(flat_text, text)
    outputs = {
        VIDEO_EMBEDDING: _named(video_out[VIDEO_EMBEDDING], VIDEO_EMBEDDING),
        MIXED_5C: _named(video_out[MIXED_5C], MIXED_5C),
        TEXT_EMBEDDING: _named(text_embedding, TEXT_EMBEDDING),
    }
    return keras.Model({VIDEO_INPUT: video, TEXT_INPUT: text}, outputs,
                       name="milnce")


def _named(x, name):
    return keras.layers.Activation("linear", dtype="float32", name=name)(x)


def word_table(model):
    """The word-table variable [vocab_size, word_dim] of a MIL-NCE model
    (or of its ``text_module`` alone)."""
    text_net = model if model.name == TEXT_MODEL else model.get_layer(
        TEXT_MODEL)
    return text_net.get_layer(WORD_TABLE).embeddings


def set_word_embeddings(model, matrix):
    """Copies a word table into the model (e.g. word2vec rows; row 0 is the
    padding id's vector, zeros in the release).

    Args:
        model: a model from :func:`build_milnce_model` (or its text module).
        matrix: float array [vocab_size, word_dim].

    Raises:
        UserInputError: the matrix has another shape than the table.
    """
    variable = word_table(model)
    matrix = np.asarray(matrix, dtype=np.float32)
    want = tuple(int(d) for d in variable.shape)
    if matrix.shape != want:
        raise UserInputError(
            f"word table has shape {matrix.shape}, the model expects {want} "
            f"(vocab_size rows including the padding row 0, word_dim "
            f"columns)")
    variable.assign(matrix)


@dataclasses.dataclass(frozen=True)
class ParameterCounts:
    """Scalars of a MIL-NCE model by part.

    Attributes:
        trainable: all trainable scalars (batch-norm gamma/beta included).
        trunk: trainable scalars of S3D-G without its ``fc``.
        video_fc: the ``fc`` projection (1024 -> D).
        text: trainable scalars of the text module.
        word_table: entries of the word table (frozen unless
            ``train_word_embeddings``; then also part of ``text``).
    """

    trainable: int
    trunk: int
    video_fc: int
    text: int
    word_table: int


def _size(variables):
    return int(sum(math.prod(v.shape) for v in variables))


def parameter_counts(model):
    """Counts a MIL-NCE model's parameters by part (see ParameterCounts).

    Published setting (no space-to-depth, frozen 66,250 x 300 table):
    trainable 11,315,408 = trunk 9,125,072 + video fc 524,800 + text
    1,665,536, and 19,875,000 word-table entries.
    """
    video_net = model.get_layer(VIDEO_MODEL)
    fc = video_net.get_layer("fc")
    video_fc = _size(fc.trainable_weights)
    return ParameterCounts(
        trainable=_size(model.trainable_weights),
        trunk=_size(video_net.trainable_weights) - video_fc,
        video_fc=video_fc,
        text=_size(model.get_layer(TEXT_MODEL).trainable_weights),
        word_table=_size([word_table(model)]))
