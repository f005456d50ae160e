"""Text-to-video retrieval evaluation of a joint embedding model.

Used by ``howto.eval`` and by ``howto.train`` at the end of every epoch:
embed every clip of a test set (in file order, once each, on every replica
via vidcore.prediction), score every caption against every clip, and report
R@1/5/10 (percent) and median rank with vidcore.metrics.
"""

import numpy as np

from input_pipeline import howto as reader
from vidcore import metrics, prediction


def embed_clip_set(strategy, model, files, clip_cfg, encoder, batch_size):
    """Embeds the first caption and the clip of every record.

    Args:
        strategy: tf.distribute.Strategy.
        model: joint model from howto.models.build_model.
        files: clip shard paths.
        clip_cfg: input_pipeline.howto.ClipConfig.
        encoder: vidcore.text.TextEncoder.
        batch_size: clips per global batch (rounded up to a multiple of the
            replica count).

    Returns:
        (text [Q, D], video [Q, D]) numpy float32, in record order.
    """
    replicas = strategy.num_replicas_in_sync
    batch_size = -(-batch_size // replicas) * replicas
    dataset = reader.evaluation_dataset(files, clip_cfg, encoder, batch_size)

    def replica_fn(inputs, mask):
        out = model(inputs, training=False)
        return {"text": out["text"], "video": out["video"], "mask": mask}

    texts, videos = [], []
    for out in prediction.run_batches(strategy, dataset, replica_fn):
        keep = out["mask"].astype(bool)
        texts.append(out["text"][keep])
        videos.append(out["video"][keep])
    return np.concatenate(texts), np.concatenate(videos)


def embed_sets(strategy, model, sets, clip_cfg, encoder, batch_size):
    """{name: (text [Q, D], video [Q, D])} of every set (embed_clip_set);
    a set without files (one worker's empty block) gives [0, 0] arrays."""
    empty = np.zeros((0, 0), np.float32)
    return {name: (embed_clip_set(strategy, model, files, clip_cfg, encoder,
                                  batch_size) if files else (empty, empty))
            for name, files in sets.items()}


def retrieval_results(embeddings, ties="pessimistic", video_to_text=False):
    """Retrieval metrics of {name: (text, video)} embeddings (rows are
    matching pairs); see evaluate_sets."""
    results = {}
    for name, (text, video) in embeddings.items():
        results[f"{name} text->video"] = metrics.retrieval_metrics(
            metrics.retrieval_ranks(text, video, ties=ties))
        if video_to_text:
            results[f"{name} video->text"] = metrics.retrieval_metrics(
                metrics.retrieval_ranks(video, text, ties=ties))
    return results


def evaluate_sets(strategy, model, sets, clip_cfg, encoder, batch_size,
                  ties="pessimistic", video_to_text=False):
    """Retrieval metrics on each test set.

    Args:
        sets: {name: list of clip shard paths}.
        ties: tie rule of vidcore.metrics.retrieval_ranks.
        video_to_text: also score clips as queries against captions.
        (others as in embed_clip_set)

    Returns:
        {row name: metrics dict} with rows "<name> text->video" (and
        "<name> video->text").
    """
    return retrieval_results(
        embed_sets(strategy, model, sets, clip_cfg, encoder, batch_size),
        ties=ties, video_to_text=video_to_text)
