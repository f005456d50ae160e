"""Retrieval evaluation of AVLnet models, used by avl.eval and by avl.train
before training and after every epoch.

As the original's ``Eval_retrieval``: every clip of a test set is embedded
once (in file order, on every replica via vidcore.prediction), the
similarity ``S = queries @ items^T`` of the model's retrieval pair
(:func:`avl.models.retrieval_pair`: audio -> video for AVLnet, audio+text ->
video for Text-Fused, text -> audio+video for Text-Tri) ranks each clip's
true partner among all clips, and R@1/5/10 (percent) and the median rank
come from vidcore.metrics. ``lang_retrieval`` (``--eval_lang_retrieval=1``)
transposes S: video clips become the queries.

Clips without audio (MSR-VTT: 32 of the 1,000 1k-A test clips) take no part
in S, as they were absent from the original's test pickle; they count as
misses: recall is divided by all the set's clips (for MSR-VTT,
``--msrvtt_test_clips``, 1000, whether or not the shards hold the clips
without audio). The median rank is, as in the original, that of the clips
evaluated.
"""

import numpy as np

from avl import models
from input_pipeline import avl as reader
from input_pipeline import records
from vidcore import metrics, prediction
from vidcore.errors import UserInputError

HAS_AUDIO = "has_audio"
# Display names of the model outputs in retrieval row names.
_NAMES = {models.AUDIO: "audio", models.VIDEO: "video",
          models.TEXT: "text", models.AUDIO_VIDEO: "audio+video",
          models.AUDIO_TEXT: "audio+text"}


def direction(cfg, lang_retrieval=False):
    """(query output, item output) of the model's retrieval, transposed for
    language retrieval."""
    queries, items = models.retrieval_pair(cfg)
    return (items, queries) if lang_retrieval else (queries, items)


def row_name(set_name, cfg, lang_retrieval=False):
    """e.g. "MSR-VTT audio->video"."""
    queries, items = direction(cfg, lang_retrieval)
    return f"{set_name} {_NAMES[queries]}->{_NAMES[items]}"


def embed_clip_set(strategy, model, files, clip_cfg, encoder, batch_size,
                   pair):
    """Embeds every clip of a set once, in record order.

    Args:
        strategy: tf.distribute.Strategy.
        model: from avl.models.build_model.
        files: clip shard paths.
        clip_cfg: input_pipeline.avl.AVLClipConfig of the set.
        encoder: vidcore.text.TextEncoder (text variants) or None.
        batch_size: clips per global batch, at most the set's clips
            (rounded up to a multiple of the replica count).
        pair: (query output, item output) names.

    Returns:
        (queries [Q, D], items [Q, D], has_audio bool [Q]) numpy.
    """
    # Batches are padded to full size: no larger than the set (the
    # original's 3,500 would pad a small set's one batch with empty clips).
    count = records.manifest_record_count(files)
    count = records.count_records(files) if count is None else count
    replicas = strategy.num_replicas_in_sync
    batch_size = min(batch_size, max(count, 1))
    batch_size = -(-batch_size // replicas) * replicas
    dataset = reader.evaluation_dataset(files, clip_cfg, encoder, batch_size)
    query_key, item_key = pair

    def replica_fn(inputs, mask):
        out = model({k: v for k, v in inputs.items()
                     if k in model.input}, training=False)
        return {"queries": out[query_key], "items": out[item_key],
                "has_audio": inputs[HAS_AUDIO], "mask": mask}

    queries, items, has_audio = [], [], []
    for out in prediction.run_batches(strategy, dataset, replica_fn):
        keep = out["mask"].astype(bool)
        queries.append(out["queries"][keep])
        items.append(out["items"][keep])
        has_audio.append(out["has_audio"][keep].astype(bool))
    return (np.concatenate(queries), np.concatenate(items),
            np.concatenate(has_audio))


def set_metrics(queries, items, has_audio, num_clips=None,
                ties="pessimistic"):
    """Retrieval metrics of one set; clips without audio count as misses.

    Args:
        queries: [Q, D] query embeddings, row i the partner of items[i].
        items: [Q, D].
        has_audio: bool [Q]; False rows are left out of the ranking.
        num_clips: clips the set has in all (recall's denominator), >= Q
            (None: Q).
        ties: tie rule of vidcore.metrics.retrieval_ranks.

    Returns:
        vidcore.metrics.retrieval_metrics' dict with R@K over num_clips,
        MedR and MeanR over the clips ranked, "num_queries" = num_clips and
        "without_audio" = num_clips - clips ranked.

    Raises:
        UserInputError: no clip has audio, or num_clips < Q.
    """
    total = len(has_audio) if num_clips is None else int(num_clips)
    if total < len(has_audio):
        raise UserInputError(f"the set holds {len(has_audio)} clips, more "
                             f"than the {total} of its split "
                             f"(--msrvtt_test_clips)")
    keep = np.asarray(has_audio, bool)
    if not keep.any():
        raise UserInputError(f"none of the {len(keep)} clips has audio")
    ranks = metrics.retrieval_ranks(queries[keep], items[keep], ties=ties)
    out = metrics.retrieval_metrics(ranks)
    for key in out:
        if key.startswith("R@"):  # percent of ALL clips: the rest missed
            out[key] = 100.0 * float(np.sum(ranks <= int(key[2:]))) / total
    out["num_queries"] = total
    out["without_audio"] = total - int(keep.sum())
    return out


def evaluate_sets(strategy, model, cfg, sets, encoder, batch_size,
                  lang_retrieval=False, ties="pessimistic"):
    """Retrieval metrics on each test set.

    Args:
        strategy: tf.distribute.Strategy.
        model: from avl.models.build_model(cfg).
        cfg: the model's AVLConfig.
        sets: {name: (files, AVLClipConfig, num_clips or None)}.
        encoder: vidcore.text.TextEncoder or None (AVLnet).
        batch_size: clips per evaluation batch.
        lang_retrieval: rank language (audio / text) given video clips.
        ties: tie rule of vidcore.metrics.retrieval_ranks.

    Returns:
        {row name: metrics dict} (see :func:`set_metrics`), one row per set.
    """
    pair = direction(cfg, lang_retrieval)
    results = {}
    for name, (files, clip_cfg, num_clips) in sets.items():
        queries, items, has_audio = embed_clip_set(
            strategy, model, files, clip_cfg, encoder, batch_size, pair)
        results[row_name(name, cfg, lang_retrieval)] = set_metrics(
            queries, items, has_audio, num_clips, ties=ties)
    return results


def report(results):
    """The table of results, plus a line per set with clips without audio
    (counted as misses)."""
    lines = [metrics.format_retrieval_table(results)]
    for name, m in results.items():
        if m["without_audio"]:
            ranked = m["num_queries"] - m["without_audio"]
            lines.append(
                f"{name}: {m['without_audio']} of "
                f"{m['num_queries']} clips have no audio and count as "
                f"misses (recall over {m['num_queries']}, median rank over "
                f"the {ranked} with audio)")
    return "\n".join(lines)
