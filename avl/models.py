"""AVLnet models: config values in, keras.Model out.

Three models of the AVLnet paper (Rouditchenko et al., "AVLnet: Learning
Audio-Visual Language Representations from Instructional Videos",
Interspeech 2021, Sec. 3 and 5.3), as the released ``model.Net`` builds
them. D is ``embd_dim``; "GEU" is the gated embedding unit WITHOUT the L2
normalisation (Dense, then context gating ``y * sigmoid(W y + b)``):

* AVLnet (``tri_modal`` off): audio = ResDAVEnet (1024, mean over time)
  -> GEU(1024 -> 1024) -> Dense(1024 -> D); video = GEU(feature_dim -> D)
  on the clip's max-pooled 2D+3D features. The loss compares audio with
  video.
* AVLnet-Text-Tri (``tri_modal``): also text = sentence max-pool
  (we_dim -> D, ReLU, max over words) -> GEU(D -> D); three separate
  embeddings, and their sum ``audio_video`` = audio + video. Pre-training
  loss MMS(A, V) + MMS(A, T) + MMS(T, V); with
  ``fuse_videoaudio_additive`` (fine-tuning) MMS(T, A + V).
* AVLnet-Text-Fused (``tri_modal`` and ``tri_modal_fuse``): audio =
  ResDAVEnet -> Dense(1024 -> D/2), text = sentence max-pool
  (we_dim -> D/2); ``audio_text`` = context gating(Dense(audio) +
  Dense(text)) (both D/2 -> D), compared with the video embedding.

Inputs: ``{"video": float [N, feature_dim], "audio": float [N, 40, T]
(log-mel, any T), "nframes": int [N] (real frames of each spectrogram),
"text": float [N, max_words, we_dim] (text variants)}``. Outputs: float32
embeddings ``{"audio", "video"}``, plus ``{"text", "audio_video"}``
(Text-Tri), or ``{"audio_text", "video"}`` (Text-Fused). The audio is
mean-pooled over all steps in training and over the valid steps in
evaluation (``vidcore.backbones.resdavenet``: why).

Layer names are the released module's attribute names (``DAVEnet``,
``DAVEnet_projection``, ``GU_audio``, ``GU_video``,
``text_pooling_caption``, ``GU_text_captions``, ``GU_audio_text``), so
``avl.convert_torch`` maps the released state dicts one to one.

Trainable parameters (``python -m avl.train ... --dry_run``):

========================  ===========  ===========  ==========================
model                     ours         original     difference (never used)
========================  ===========  ===========  ==========================
AVLnet, D 4096             84,531,200   84,531,202  DAVEnet.batchnorm1 (2)
AVLnet-Text-Tri, D 6144   193,353,728  193,353,730  DAVEnet.batchnorm1 (2)
AVLnet-Text-Fused, D 4096 114,515,968  116,615,170  DAVEnet.batchnorm1 (2) +
                                                    GU_audio (2,099,200)
========================  ===========  ===========  ==========================

The original's ResDavenet creates a 1-channel BatchNorm2d that its forward
pass skips, and its Text-Fused ``Net`` still creates ``GU_audio`` (1024 ->
1024), which only the other two models call; neither receives a gradient,
and neither is built here. The ResDAVEnet alone has 44,670,976 (44,670,978
in the original with the unused batch norm).
"""

import dataclasses

import keras

from vidcore.backbones.resdavenet import NUM_BANDS, resdavenet
from vidcore.config import dataclass_from_dict
from vidcore.errors import UserInputError
from vidcore.layers.embedding import (GatedEmbeddingUnit, SentenceMaxPool,
                                      torch_dense)
from vidcore.layers.gating import ContextGating

VIDEO = "video"
AUDIO = "audio"
NFRAMES = "nframes"
TEXT = "text"
AUDIO_VIDEO = "audio_video"
AUDIO_TEXT = "audio_text"
AUDIO_FEATURE_DIM = 1024  # ResDAVEnet's output width


@dataclasses.dataclass
class AVLConfig:
    """Architecture settings, named as the original command-line flags.

    Attributes:
        embd_dim: D, the joint embedding size (4096 for AVLnet and
            AVLnet-Text-Fused, 6144 for AVLnet-Text-Tri).
        feature_dim: size of the video feature (2D + 3D: 4096).
        we_dim: word-vector size (300 for GoogleNews word2vec).
        max_words: words per caption (text variants).
        tri_modal: add the text branch (AVLnet-Text).
        tri_modal_fuse: fuse audio and text (AVLnet-Text-Fused); needs
            tri_modal.
        fuse_videoaudio_additive: train Text-Tri on MMS(text, audio +
            video) only (its fine-tuning); needs tri_modal, not
            tri_modal_fuse. Changes the loss, not the model.
        mask_audio_padding_in_training: mean-pool the audio over the valid
            steps in training too (not the published behaviour).
        sync_bn: ResDAVEnet batch-norm statistics over the global batch
            (the original's DataParallel normalised per GPU).
    """

    embd_dim: int = 2048
    feature_dim: int = 4096
    we_dim: int = 300
    max_words: int = 20
    tri_modal: bool = False
    tri_modal_fuse: bool = False
    fuse_videoaudio_additive: bool = False
    mask_audio_padding_in_training: bool = False
    sync_bn: bool = False

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return dataclass_from_dict(cls, d)

    @property
    def variant(self):
        """Which model: "avlnet", "text_tri" or "text_fused"."""
        if not self.tri_modal:
            return "avlnet"
        return "text_fused" if self.tri_modal_fuse else "text_tri"


def validate_config(cfg):
    """Raises UserInputError with one clear message for a bad config."""
    for name in ("embd_dim", "feature_dim", "we_dim", "max_words"):
        if getattr(cfg, name) < 1:
            raise UserInputError(f"--{name} must be positive, got "
                                 f"{getattr(cfg, name)}")
    if cfg.tri_modal_fuse and not cfg.tri_modal:
        raise UserInputError("--tri_modal_fuse=1 needs --tri_modal=1 (the "
                             "fused model takes text)")
    if cfg.tri_modal_fuse and cfg.embd_dim < 2:
        raise UserInputError("--tri_modal_fuse=1 needs --embd_dim >= 2 (its "
                             f"branches have embd_dim / 2), got "
                             f"{cfg.embd_dim}")
    if cfg.fuse_videoaudio_additive and (not cfg.tri_modal
                                         or cfg.tri_modal_fuse):
        raise UserInputError("--fuse_videoaudio_additive=1 needs "
                             "--tri_modal=1 and --tri_modal_fuse=0 "
                             "(AVLnet-Text-Tri)")


@keras.saving.register_keras_serializable(package="avl")
class FusedGatedUnit(keras.layers.Layer):
    """``y = CG(W_a a + b_a + W_t t + b_t)``: audio and text fused into one
    embedding (AVLnet-Text-Fused), CG the context gating with bias.

    Called on ``[audio, text]`` ([N, Da], [N, Dt]); returns [N, output_dim].
    Dense layers use PyTorch nn.Linear's initialisation, as the release.

    Args:
        output_dim: embedding size D.
    """

    def __init__(self, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.gate = ContextGating(add_batch_norm=False, initializer="torch",
                                  name="context_gating")

    def build(self, input_shape):
        audio_shape, text_shape = input_shape
        self.fc_audio = torch_dense(self.output_dim, int(audio_shape[-1]),
                                    "fc_audio")
        self.fc_audio.build(audio_shape)
        self.fc_text = torch_dense(self.output_dim, int(text_shape[-1]),
                                   "fc_text")
        self.fc_text.build(text_shape)
        self.gate.build(tuple(audio_shape[:-1]) + (self.output_dim,))

    def call(self, inputs):
        audio, text = inputs
        return self.gate(self.fc_audio(audio) + self.fc_text(text))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (self.output_dim,)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim}


def _float32(x, name):
    """Identity in float32 (the embeddings leave the model in float32 under
    a mixed-precision policy)."""
    return keras.layers.Activation("linear", dtype="float32",
                                   name=f"{name}_embedding")(x)


def build_model(cfg):
    """Builds AVLnet, AVLnet-Text-Tri or AVLnet-Text-Fused (module doc).

    Args:
        cfg: AVLConfig.

    Returns:
        A functional keras.Model named "avlnet" / "avlnet_text_tri" /
        "avlnet_text_fused" with the inputs and outputs of the module
        docstring; the ResDAVEnet is the nested model ``DAVEnet``.

    Raises:
        UserInputError: a bad config (validate_config).
    """
    validate_config(cfg)
    d = cfg.embd_dim
    inputs = {
        VIDEO: keras.Input((cfg.feature_dim,), name=VIDEO),
        AUDIO: keras.Input((NUM_BANDS, None), name=AUDIO),
        NFRAMES: keras.Input((), dtype="int32", name=NFRAMES),
    }
    if cfg.tri_modal:
        inputs[TEXT] = keras.Input((cfg.max_words, cfg.we_dim), name=TEXT)
    davenet = resdavenet(
        mask_padding_in_training=cfg.mask_audio_padding_in_training,
        sync_bn=cfg.sync_bn, name="DAVEnet")
    audio = davenet({AUDIO: inputs[AUDIO], NFRAMES: inputs[NFRAMES]})
    video = GatedEmbeddingUnit(d, l2_normalize=False, name="GU_video")(
        inputs[VIDEO])
    outputs = {VIDEO: video}
    if cfg.tri_modal_fuse:
        # [N, 1024] -> [N, D/2]; text [N, L, we_dim] -> [N, D/2]
        audio = torch_dense(d // 2, AUDIO_FEATURE_DIM,
                            "DAVEnet_projection")(audio)
        text = SentenceMaxPool(d // 2, name="text_pooling_caption")(
            inputs[TEXT])
        outputs[AUDIO_TEXT] = FusedGatedUnit(d, name="GU_audio_text")(
            [audio, text])
    else:
        # Gating at 1024 before the projection (the original: "for
        # stability with mixed-precision training").
        audio = GatedEmbeddingUnit(AUDIO_FEATURE_DIM, l2_normalize=False,
                                   name="GU_audio")(audio)
        outputs[AUDIO] = torch_dense(d, AUDIO_FEATURE_DIM,
                                     "DAVEnet_projection")(audio)
        if cfg.tri_modal:
            text = SentenceMaxPool(d, name="text_pooling_caption")(
                inputs[TEXT])
            outputs[TEXT] = GatedEmbeddingUnit(
                d, l2_normalize=False, name="GU_text_captions")(text)
            outputs[AUDIO_VIDEO] = keras.layers.Add(name="audio_plus_video")(
                [outputs[AUDIO], video])
    outputs = {key: _float32(value, key) for key, value in outputs.items()}
    name = "avlnet" if cfg.variant == "avlnet" else f"avlnet_{cfg.variant}"
    return keras.Model(inputs, outputs, name=name)


def loss_pairs(cfg):
    """The (rows, columns) output pairs whose MMS losses are summed in
    training, as the original's TrainOneBatch.

    Args:
        cfg: AVLConfig.

    Returns:
        Tuple of (output name, output name) pairs.
    """
    if cfg.tri_modal_fuse:
        return ((AUDIO_TEXT, VIDEO),)
    if cfg.tri_modal:
        if cfg.fuse_videoaudio_additive:
            return ((TEXT, AUDIO_VIDEO),)
        return ((AUDIO, VIDEO), (AUDIO, TEXT), (TEXT, VIDEO))
    return ((AUDIO, VIDEO),)


def retrieval_pair(cfg):
    """The (queries, items) outputs compared in retrieval evaluation.

    As the original's Eval_retrieval: audio -> video (AVLnet), audio+text ->
    video (Text-Fused), text -> audio + video (Text-Tri). The original
    evaluates Text-Tri only with ``--fuse_videoaudio_additive`` (otherwise
    it has no similarity matrix and fails); here Text-Tri is always
    evaluated text -> audio + video.

    Args:
        cfg: AVLConfig.

    Returns:
        (query output name, item output name); rows of the similarity
        matrix are queries (language retrieval transposes it).
    """
    if cfg.tri_modal_fuse:
        return (AUDIO_TEXT, VIDEO)
    if cfg.tri_modal:
        return (TEXT, AUDIO_VIDEO)
    return (AUDIO, VIDEO)
