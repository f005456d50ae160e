"""HowTo100M joint text-video embedding: config values in, keras.Model out.

Architecture (Miech et al., ICCV 2019; the released ``model.Net``):

* video branch: the clip's 2D and 3D features, each max-pooled over the
  clip and L2-normalised, concatenated (``video_dim`` = 4096) ->
  gated embedding unit -> D;
* text branch: word2vec vectors [max_words, 300] -> Dense(300 -> D) + ReLU,
  max over words -> gated embedding unit -> D;
* similarity: dot product of the two L2-normalised embeddings.

The model takes ``{"video": float [N, video_dim], "text": float
[N, max_words, we_dim]}`` and returns ``{"text": [N, D], "video": [N, D]}``.
Layer names follow the released PyTorch module (``GU_video``,
``text_pooling``, ``GU_text``) so converted checkpoints map one to one.
"""

import dataclasses

import keras

from vidcore.config import dataclass_from_dict
from vidcore.errors import UserInputError
from vidcore.layers.embedding import GatedEmbeddingUnit, SentenceMaxPool

VIDEO_INPUT = "video"
TEXT_INPUT = "text"


@dataclasses.dataclass
class ModelConfig:
    """Architecture settings, named as the original command-line flags.

    Attributes:
        embd_dim: D, the joint embedding size (4096 in the published
            HowTo100M command, 6144 for the released pretrained model).
        feature_dim: size of the concatenated clip feature (2D + 3D).
        we_dim: word-vector size (300 for GoogleNews word2vec).
        max_words: words per sentence after truncation / zero padding.
        sentence_dim: text max-pool size; <= 0 means embd_dim.
    """

    embd_dim: int = 2048
    feature_dim: int = 4096
    we_dim: int = 300
    max_words: int = 20
    sentence_dim: int = -1

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return dataclass_from_dict(cls, d)

    @property
    def text_pool_dim(self):
        return self.sentence_dim if self.sentence_dim > 0 else self.embd_dim


def validate_config(cfg):
    """Raises UserInputError with one clear message for a bad config."""
    for name in ("embd_dim", "feature_dim", "we_dim", "max_words"):
        if getattr(cfg, name) < 1:
            raise UserInputError(f"--{name} must be positive, got "
                                 f"{getattr(cfg, name)}")


def build_model(cfg):
    """Builds the joint embedding model.

    Args:
        cfg: ModelConfig.

    Returns:
        A functional keras.Model named "howto100m_embedding" with inputs
        {"video": [N, feature_dim], "text": [N, max_words, we_dim]} and outputs
        {"text": [N, D], "video": [N, D]} (L2-normalised, float32).
    """
    validate_config(cfg)
    video = keras.Input((cfg.feature_dim,), name=VIDEO_INPUT)
    text = keras.Input((cfg.max_words, cfg.we_dim), name=TEXT_INPUT)
    video_embedding = GatedEmbeddingUnit(cfg.embd_dim, name="GU_video")(video)
    sentence = SentenceMaxPool(cfg.text_pool_dim, name="text_pooling")(text)
    text_embedding = GatedEmbeddingUnit(cfg.embd_dim, name="GU_text")(sentence)
    outputs = {
        TEXT_INPUT: keras.layers.Activation(
            "linear", dtype="float32", name="text_embedding")(text_embedding),
        VIDEO_INPUT: keras.layers.Activation(
            "linear", dtype="float32", name="video_embedding")(
                video_embedding),
    }
    return keras.Model({VIDEO_INPUT: video, TEXT_INPUT: text}, outputs,
                       name="howto100m_embedding")


def encoders(model):
    """The two branches of a joint model as separate models (same weights).

    Args:
        model: a model from :func:`build_model`.

    Returns:
        (text_encoder, video_encoder): keras.Models mapping [N, max_words,
        we_dim] -> [N, D] and [N, feature_dim] -> [N, D].
    """
    text_encoder = keras.Model(model.input[TEXT_INPUT],
                               model.output[TEXT_INPUT], name="text_encoder")
    video_encoder = keras.Model(model.input[VIDEO_INPUT],
                                model.output[VIDEO_INPUT],
                                name="video_encoder")
    return text_encoder, video_encoder
