"""AVLnet: audio-visual (and audio-video-text) embeddings learnt from
instructional videos (Rouditchenko et al., Interspeech 2021): the models,
the masked-margin-softmax training and the released-weights converter."""

# Importing vidcore first sets TensorFlow's C++ log level and filters its
# start-up lines before any module of this package imports TensorFlow.
import vidcore  # noqa: F401
