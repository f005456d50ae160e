"""tf.train.Feature builders shared by every writer."""

import tensorflow as tf


def to_utf8(text):
    """str (or bytes, kept as is) -> UTF-8 bytes."""
    return text if isinstance(text, bytes) else str(text).encode("utf-8")


def bytes_feature(values):
    """Feature of a bytes list (str values are UTF-8 encoded)."""
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[to_utf8(v) for v in values]))


def int64_feature(values):
    """Feature of an int64 list."""
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def float_feature(values):
    """Feature of a float (32-bit) list."""
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))
