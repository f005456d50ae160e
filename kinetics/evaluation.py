"""Clip and video accuracy of a classifier over evaluation shards.

Every video of the shards is read once, in file order, as
``clips_per_video`` evenly spaced clips (centre crop); the clip softmax
scores come back from every replica in order (vidcore.prediction), and the
video score is the mean of its clips' softmax, as in torchvision's recipe.
"""

import numpy as np
import tensorflow as tf

from input_pipeline import video as reader
from vidcore import metrics, prediction


def clip_scores(strategy, model, files, clip_cfg, batch_size):
    """Softmax scores of every evaluation clip.

    Args:
        strategy: tf.distribute.Strategy the model was built under.
        model: clips -> logits.
        files: shard paths.
        clip_cfg: input_pipeline.video.VideoClipConfig.
        batch_size: global clips per batch (a multiple of the replicas).

    Returns:
        (probs float32 [N, C], labels int32 [N], video_index int64 [N]) for
        the N real clips (padding removed).
    """
    # The reader hands over uint8 pixels, normalised here on the device.
    dataset = reader.evaluation_dataset(files, clip_cfg, batch_size,
                                        normalize=False)

    def replica_fn(pixels, labels, video_index, mask):
        clips = reader.normalize_clip_pixels(pixels, clip_cfg)
        logits = model(clips, training=False)
        probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        return {"probs": probs, "labels": labels,
                "video_index": video_index, "mask": mask}

    parts = {"probs": [], "labels": [], "video_index": []}
    for out in prediction.run_batches(strategy, dataset, replica_fn):
        keep = out["mask"].astype(bool)
        for key, chunks in parts.items():
            chunks.append(out[key][keep])
    if not parts["probs"]:
        if not files:  # one worker's empty block of shards
            return (np.zeros((0, 0), np.float32), np.zeros(0, np.int32),
                    np.zeros(0, np.int64))
        raise ValueError("the evaluation shards hold no videos")
    return tuple(np.concatenate(parts[k]) for k in
                 ("probs", "labels", "video_index"))


def accuracy(probs, labels, video_index):
    """Clip and video top-1/top-5 accuracy (percent) of clip scores.

    Raises:
        ValueError: unlabelled videos, or labels the model does not have.
    """
    if np.any(labels < 0):
        raise ValueError("some videos have no label (clip/label/index); "
                         "accuracy needs labelled shards")
    if labels.max() >= probs.shape[1]:
        raise ValueError(f"label {int(labels.max())} but the model has "
                         f"{probs.shape[1]} classes")
    return metrics.clip_and_video_accuracy(probs, labels, video_index)


def evaluate(strategy, model, files, clip_cfg, batch_size):
    """Clip and video top-1/top-5 accuracy (percent) over ``files``."""
    return accuracy(*clip_scores(strategy, model, files, clip_cfg,
                                 batch_size))


def format_accuracy(results):
    """One readable block of the evaluate() dict."""
    return (f"clips {results['num_clips']}, videos {results['num_videos']}\n"
            f"  clip  acc@1 {results['clip_acc@1']:.3f}  acc@5 "
            f"{results['clip_acc@5']:.3f}\n"
            f"  video acc@1 {results['video_acc@1']:.3f}  acc@5 "
            f"{results['video_acc@5']:.3f}")
