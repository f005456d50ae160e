"""Weights for training or evaluation: the model's initial weights from a
path of either kind (the authors' PyTorch state dict, ``.pth``, converted on
the fly, or one of our checkpoint directories / prefixes), and the frozen
word vectors of the text input."""


import tensorflow as tf

from vidcore import text, training
from vidcore.errors import UserInputError


def is_torch_checkpoint(path):
    return path.endswith((".pth", ".pt"))


def load_pretrained(model, path, state_dict=None):
    """Loads the joint model's weights from ``path``.

    Args:
        model: a model from howto.models.build_model (same config as the
            weights).
        path: ``.pth`` / ``.pt`` PyTorch state dict, a checkpoint directory,
            or a checkpoint prefix.
        state_dict: the ``.pth`` file's contents when the caller has read
            them already (convert_torch.read_state_dict), to read it once.

    Returns:
        The path that was loaded.

    Raises:
        UserInputError: the path does not exist or does not match the model.
    """
    if is_torch_checkpoint(path):
        from howto import convert_torch  # torch is an optional extra
        if state_dict is None:
            state_dict = convert_torch.read_state_dict(path)
        convert_torch.load_into_model(model, state_dict)
        return path
    if tf.io.gfile.isdir(path):
        try:
            return training.restore_model_weights(model, path)
        except FileNotFoundError as e:
            raise UserInputError(str(e)) from None
    if tf.io.gfile.exists(path + ".index"):
        return training.restore_model_weights(model, None, path)
    raise UserInputError(f"--pretrain_path={path}: not a .pth file, a "
                         f"checkpoint directory or a checkpoint prefix")


def text_encoder(word2vec_path, we_dim):
    """The tf.data text encoder of a word-vector file.

    Args:
        word2vec_path: word2vec binary, GloVe / word2vec text, or a directory
            saved by vidcore.text.WordVectors.save.
        we_dim: the word-vector size the model takes.

    Returns:
        vidcore.text.TextEncoder (it holds the only copy of the matrix:
        3.6 GB for GoogleNews).

    Raises:
        UserInputError: no path, or vectors of another size.
    """
    if not word2vec_path:
        raise UserInputError("--word2vec_path is required (GoogleNews "
                             "word2vec binary, GloVe text, or a saved "
                             "directory)")
    word_vectors = text.WordVectors.load(word2vec_path)
    if word_vectors.dim != we_dim:
        raise UserInputError(f"--we_dim={we_dim} but {word2vec_path} holds "
                             f"{word_vectors.dim}-d vectors")
    return text.TextEncoder(word_vectors)
