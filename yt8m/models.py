"""YouTube-8M model builders: config values in, functional keras.Model out.

Frame-level models (the Kaggle 2017 winners' "LF" models and the starter
models) take ``{"frames": uint8 [B, max_frames, D], "num_frames": int32 [B]}``;
video-level models take ``{"features": float32 [B, D]}``. All return class
probabilities [B, num_classes] in float32.

Common frame-level path (Miech et al., arXiv:1706.06905, and their Kaggle
code): dequantise and zero the padding, L2-normalise each frame over all its
features, sample ``iterations`` frames, batch-normalise, pool each feature
(video, audio, ...) separately, hidden layer, optional context gating, MoE.
"""

import dataclasses
import math
from typing import Tuple

import keras

from input_pipeline import features as feature_keys
from vidcore.config import dataclass_from_dict
from vidcore.errors import UserInputError
from vidcore.training import count_trainable_params  # noqa: F401 (re-export)
from vidcore.layers.frames import (DequantizeFrames, FrameSampler,
                                   L2Normalize, LengthMask, MaskedMean,
                                   SplitFeatures)
from vidcore.layers.gating import ContextGating
from vidcore.layers.normalization import batch_norm
from vidcore.layers.moe import LogisticClassifier, MixtureOfExperts
from vidcore.layers.pooling import DBoF, GatedDBoF, NetFV, NetVLAD, SoftDBoF
from vidcore.layers.recurrent import TF1GRU


@dataclasses.dataclass
class ModelConfig:
    """Every architecture setting, named as the original command-line flags.

    Defaults follow the original code (the Kaggle winners' repository where it
    extends the starter code, the starter code otherwise).
    """

    model: str = "LogisticModel"
    num_classes: int = feature_keys.YT8M_NUM_CLASSES
    frame_features: bool = False
    feature_sizes: Tuple[int, ...] = (1024, 128)
    max_frames: int = feature_keys.YT8M_MAX_FRAMES
    iterations: int = 30
    sample_random_frames: bool = True
    bn_momentum: float = 0.999
    # NetVLAD / NetRVLAD.
    netvlad_cluster_size: int = 64
    netvlad_hidden_size: int = 1024
    netvlad_relu: bool = True
    netvlad_add_batch_norm: bool = True
    lightvlad: bool = False
    gating: bool = False
    # NetFV.
    fv_cluster_size: int = 64
    fv_hidden_size: int = 2048
    fv_relu: bool = True
    fv_couple_weights: bool = True
    fv_coupling_factor: float = 0.01
    # DBoF family.
    dbof_cluster_size: int = 8192
    dbof_hidden_size: int = 1024
    dbof_relu: bool = True
    dbof_add_batch_norm: bool = True
    softdbof_maxpool: bool = False
    dbof_pooling_method: str = "max"
    dbof_activation: str = "sigmoid"
    # Recurrent models.
    gru_cells: int = 1024
    gru_layers: int = 2
    gru_random_sequence: bool = False
    lstm_cells: int = 1024
    lstm_layers: int = 2
    lstm_random_sequence: bool = False
    lstm_output: str = "full_state"
    # Classifier.
    video_level_classifier_model: str = "MoeModel"
    moe_num_mixtures: int = 2
    moe_l2: float = 1e-8
    moe_prob_gating: bool = False

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["feature_sizes"] = list(self.feature_sizes)
        return d

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        if "feature_sizes" in d:
            d["feature_sizes"] = tuple(int(s) for s in d["feature_sizes"])
        return dataclass_from_dict(cls, d)


FRAME_LEVEL_MODELS = ("NetVLADModelLF", "NetFVModelLF", "GatedDbofModelLF",
                      "SoftDbofModelLF", "GruModel", "LstmModel",
                      "FrameLevelLogisticModel", "DbofModel")
VIDEO_LEVEL_MODELS = ("LogisticModel", "MoeModel")
MODELS = FRAME_LEVEL_MODELS + VIDEO_LEVEL_MODELS
LSTM_OUTPUTS = ("full_state", "last_h")


def validate_config(cfg):
    """Raises UserInputError with one clear message for an inconsistent config."""
    if cfg.model not in MODELS:
        raise UserInputError(f"unknown --model={cfg.model!r}; expected one of "
                         f"{', '.join(MODELS)}")
    if cfg.frame_features and cfg.model in VIDEO_LEVEL_MODELS:
        raise UserInputError(f"--model={cfg.model} is a video-level model but "
                         f"--frame_features=True; use a frame-level model "
                         f"({', '.join(FRAME_LEVEL_MODELS)})")
    if not cfg.frame_features and cfg.model in FRAME_LEVEL_MODELS:
        raise UserInputError(f"--model={cfg.model} is a frame-level model: add "
                         f"--frame_features=True (and frame-level data)")
    if cfg.video_level_classifier_model not in VIDEO_LEVEL_MODELS:
        raise UserInputError("unknown --video_level_classifier_model="
                         f"{cfg.video_level_classifier_model!r}; expected one "
                         f"of {', '.join(VIDEO_LEVEL_MODELS)}")
    if cfg.lstm_output not in LSTM_OUTPUTS:
        raise UserInputError(f"unknown --lstm_output={cfg.lstm_output!r}; "
                         f"expected one of {', '.join(LSTM_OUTPUTS)}")
    if cfg.dbof_pooling_method not in DBoF.POOLINGS:
        raise UserInputError(f"unknown --dbof_pooling_method="
                         f"{cfg.dbof_pooling_method!r}; expected one of "
                         f"{', '.join(DBoF.POOLINGS)}")
    if cfg.dbof_activation not in DBoF.ACTIVATIONS:
        raise UserInputError(f"unknown --dbof_activation={cfg.dbof_activation!r};"
                         f" expected one of {', '.join(DBoF.ACTIVATIONS)}")
    if cfg.num_classes < 1 or any(s < 1 for s in cfg.feature_sizes):
        raise UserInputError("--num_classes and --feature_sizes must be positive")


def classifier(cfg, x):
    """The video-level classifier on top of a pooled representation."""
    if cfg.video_level_classifier_model == "LogisticModel":
        return LogisticClassifier(cfg.num_classes, l2_penalty=1e-8,
                                  name="classifier")(x)
    return MixtureOfExperts(
        cfg.num_classes, num_mixtures=cfg.moe_num_mixtures,
        l2_penalty=cfg.moe_l2, prob_gating=cfg.moe_prob_gating,
        bn_momentum=cfg.bn_momentum, name="classifier")(x)


def _bn(cfg, name):
    return batch_norm(cfg.bn_momentum, 1e-3, name=name)


def _hidden(cfg, x, size, cluster_size, relu, add_batch_norm):
    """Hidden layer after pooling: W ~ N(0, 1/sqrt(cluster_size)).

    With ``add_batch_norm and relu``: x W -> BN -> relu6 (no bias); otherwise
    x W + b (b ~ N(0, 0.01)), then relu6 if ``relu``.
    """
    with_bn = add_batch_norm and relu
    x = keras.layers.Dense(
        size, use_bias=not with_bn,
        kernel_initializer=keras.initializers.RandomNormal(
            stddev=1.0 / math.sqrt(cluster_size)),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="hidden1")(x)
    if with_bn:
        x = _bn(cfg, "hidden1_bn")(x)
    if relu:
        x = keras.layers.Activation("relu6", name="hidden1_relu6")(x)
    return x


def _sample(cfg, x, num_frames, random_frames=None, name="frame_sampler"):
    random_frames = (cfg.sample_random_frames if random_frames is None
                     else random_frames)
    mode = "random_frames" if random_frames else "random_sequence"
    return FrameSampler(cfg.iterations, mode=mode, name=name)(x, num_frames)


def _clustered_lf(cfg, x, num_frames):
    """NetVLAD/NetRVLAD/NetFV/gated-DBoF/soft-DBoF "LF" models."""
    bn_args = dict(bn_momentum=cfg.bn_momentum)
    if cfg.model == "NetVLADModelLF":
        k, hidden, relu = (cfg.netvlad_cluster_size, cfg.netvlad_hidden_size,
                           cfg.netvlad_relu)
        add_bn, divisor = cfg.netvlad_add_batch_norm, 2

        def pool(size, i):
            return NetVLAD(size, light=cfg.lightvlad, add_batch_norm=add_bn,
                           name=f"vlad_{i}", **bn_args)
    elif cfg.model == "NetFVModelLF":
        k, hidden, relu = cfg.fv_cluster_size, cfg.fv_hidden_size, cfg.fv_relu
        add_bn, divisor = cfg.netvlad_add_batch_norm, 2

        def pool(size, i):
            return NetFV(size, couple_weights=cfg.fv_couple_weights,
                         coupling_factor=cfg.fv_coupling_factor,
                         add_batch_norm=add_bn, name=f"fv_{i}", **bn_args)
    else:
        k, hidden, relu = (cfg.dbof_cluster_size, cfg.dbof_hidden_size,
                           cfg.dbof_relu)
        add_bn, divisor = cfg.dbof_add_batch_norm, 8
        gated = cfg.model == "GatedDbofModelLF"

        def pool(size, i):
            if gated and i == 0:
                return GatedDBoF(size, add_batch_norm=add_bn, name="dbof_0",
                                 **bn_args)
            return SoftDBoF(size, max_pool=cfg.softdbof_maxpool,
                            add_batch_norm=add_bn, name=f"dbof_{i}",
                            **bn_args)

    x = _sample(cfg, x, num_frames)
    if add_bn:
        x = _bn(cfg, "input_bn")(x)
    parts = SplitFeatures(cfg.feature_sizes, name="split_features")(x)
    # The first feature (video) gets K clusters, the others (audio) K/divisor.
    pooled = [pool(k if i == 0 else k // divisor, i)(part)
              for i, part in enumerate(parts)]
    x = (keras.layers.Concatenate(name="pooled")(pooled)
         if len(pooled) > 1 else pooled[0])
    x = _hidden(cfg, x, hidden, k, relu, add_bn)
    if cfg.gating:
        x = ContextGating(add_batch_norm=add_bn, bn_momentum=cfg.bn_momentum,
                          name="context_gating")(x)
    return classifier(cfg, x)


def _recurrent(cfg, x, num_frames):
    """GruModel / LstmModel: stacked RNN, final states into the classifier."""
    lstm = cfg.model == "LstmModel"
    random_sequence = (cfg.lstm_random_sequence if lstm
                       else cfg.gru_random_sequence)
    if random_sequence:
        # As the original: `iterations` frames drawn with replacement, run
        # for at most the video's true length.
        x = _sample(cfg, x, num_frames, random_frames=True)
    mask = LengthMask(name="length_mask")(x, num_frames)
    states = []
    layers = cfg.lstm_layers if lstm else cfg.gru_layers
    for i in range(layers):
        if lstm:
            # unit_forget_bias: forget bias starts at 1.0 (BasicLSTMCell's
            # forget_bias=1.0 at initialisation).
            rnn = keras.layers.LSTM(cfg.lstm_cells, return_sequences=True,
                                    return_state=True, unit_forget_bias=True,
                                    name=f"lstm_{i}")
            x, h, c = rnn(x, mask=mask)
            states += [c, h]
        else:
            # reset_after=False is the TF1 GRUCell (3H biases, reset gate
            # applied before the recurrent matmul); its gate biases start at 1.
            rnn = TF1GRU(cfg.gru_cells, return_sequences=True,
                         return_state=True, bias_initializer=GruGateBias(),
                         name=f"gru_{i}")
            x, h = rnn(x, mask=mask)
            states.append(h)
    if lstm and cfg.lstm_output == "last_h":
        state = states[-1]  # the starter's LstmModel: last layer's h only
    else:
        state = keras.layers.Concatenate(name="final_states")(states)
    return classifier(cfg, state)


def _dbof_starter(cfg, x, num_frames):
    """The starter code's DbofModel (one cluster layer over all features)."""
    x = _sample(cfg, x, num_frames)
    if cfg.dbof_add_batch_norm:
        x = _bn(cfg, "input_bn")(x)
    x = DBoF(cfg.dbof_cluster_size, activation=cfg.dbof_activation,
             pooling=cfg.dbof_pooling_method,
             add_batch_norm=cfg.dbof_add_batch_norm,
             bn_momentum=cfg.bn_momentum, name="dbof")(x)
    x = keras.layers.Dense(
        cfg.dbof_hidden_size, use_bias=not cfg.dbof_add_batch_norm,
        kernel_initializer=keras.initializers.RandomNormal(
            stddev=1.0 / math.sqrt(cfg.dbof_cluster_size)),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="hidden1")(x)
    if cfg.dbof_add_batch_norm:
        x = _bn(cfg, "hidden1_bn")(x)
    x = keras.layers.Activation(
        {"sigmoid": "sigmoid", "relu6": "relu6"}[cfg.dbof_activation],
        name="hidden1_act")(x)
    return classifier(cfg, x)


def _frame_logistic(cfg, x, num_frames):
    """FrameLevelLogisticModel: mean over true frames, logistic regression."""
    x = MaskedMean(name="mean_frames")(x, num_frames)
    return LogisticClassifier(cfg.num_classes, l2_penalty=1e-8,
                              name="classifier")(x)


_FRAME_BODIES = {
    "NetVLADModelLF": _clustered_lf,
    "NetFVModelLF": _clustered_lf,
    "GatedDbofModelLF": _clustered_lf,
    "SoftDbofModelLF": _clustered_lf,
    "GruModel": _recurrent,
    "LstmModel": _recurrent,
    "DbofModel": _dbof_starter,
    "FrameLevelLogisticModel": _frame_logistic,
}


@keras.saving.register_keras_serializable(package="yt8m")
class GruGateBias(keras.initializers.Initializer):
    """Bias of a Keras GRU (order z, r, h): 1.0 for both gates, 0 for the
    candidate, as the TF1 GRUCell initialised them."""

    def __call__(self, shape, dtype=None):
        units = shape[0] // 3
        return keras.ops.concatenate(
            [keras.ops.ones((2 * units,), dtype=dtype),
             keras.ops.zeros((shape[0] - 2 * units,), dtype=dtype)])

    def get_config(self):
        return {}


def model_inputs(cfg):
    """The keras.Input dict of a config's model."""
    dim = sum(cfg.feature_sizes)
    if cfg.frame_features:
        return {
            "frames": keras.Input((cfg.max_frames, dim), dtype="uint8",
                                  name="frames"),
            "num_frames": keras.Input((), dtype="int32", name="num_frames"),
        }
    return {"features": keras.Input((dim,), dtype="float32", name="features")}


def build_model(cfg):
    """Builds the keras.Model of ``cfg`` (a ModelConfig).

    Raises:
        ValueError: for an unknown model or an inconsistent configuration.
    """
    validate_config(cfg)
    inputs = model_inputs(cfg)
    if cfg.frame_features:
        x = DequantizeFrames(feature_keys.DEQUANT_SCALE,
                             feature_keys.DEQUANT_BIAS, name="dequantize")(
                                 inputs["frames"], inputs["num_frames"])
        x = L2Normalize(axis=-1, name="frame_l2_norm")(x)
        outputs = _FRAME_BODIES[cfg.model](cfg, x, inputs["num_frames"])
    else:
        x = L2Normalize(axis=-1, name="feature_l2_norm")(inputs["features"])
        if cfg.model == "LogisticModel":
            outputs = LogisticClassifier(cfg.num_classes, l2_penalty=1e-8,
                                         name="classifier")(x)
        else:
            outputs = MixtureOfExperts(
                cfg.num_classes, num_mixtures=cfg.moe_num_mixtures,
                l2_penalty=cfg.moe_l2, prob_gating=cfg.moe_prob_gating,
                bn_momentum=cfg.bn_momentum, name="classifier")(x)
    return keras.Model(inputs, outputs, name=cfg.model)

