"""Evaluation and feature extraction of a MIL-NCE model (Miech et al. 2020).

Used by ``howto.eval_msrvtt``, ``howto.eval_youcook``, ``howto.eval_hmdb``,
``howto.extract_features`` and the per-epoch ``--evaluate`` of
``howto.milnce_train``. Every function takes plain values (a model from
``howto.milnce_model.build_milnce_model``, shard paths, the reader's
``MilNCEClipConfig``) and never reads flags.

What is computed, as in the original's evaluation scripts (section 4 of the
paper):

* Zero-shot retrieval (MSR-VTT, YouCook2): every record's first caption is
  embedded by the text module, its ``num_windows_test`` evaluation windows
  by the video trunk, and the video embedding is the mean of the windows'
  ``video_embedding``. Scores are ``text @ video^T``; each caption's rank of
  its own clip gives R@1/5/10 (percent) and the median rank
  (``vidcore.metrics``; the original's ``compute_metrics`` has no tie rule,
  here ties count against the model unless asked otherwise).
* HMDB-51 linear probe: the ``mixed_5c`` features (1024-d) of each video's
  windows; per official split a linear SVM (scikit-learn ``LinearSVC``,
  C=100) is trained on the training videos' windows (one row per window,
  the video's label repeated), the decision values of a test video's
  windows are summed, and the class with the largest sum is its
  prediction; top-1 accuracy per split and the mean of the splits.
* Feature extraction: consecutive windows of ``num_frames`` frames at
  ``fps`` over each whole video; per video one ``.npz`` file
  ``<media id>.npz`` holding one float32 array [n_windows, dim] per layer
  (``mixed_5c``, ``video_embedding``) and ``start_time`` [n_windows]
  (seconds), written atomically (a hidden temporary file renamed when
  complete), so ``np.load(path)["mixed_5c"]`` reads it in a notebook; or
  one SequenceExample per video in a TFRecord shard (keys in
  ``input_pipeline.features``, "MIL-NCE features"), for tf.data.

The model runs on every replica of a ``tf.distribute`` strategy through
``vidcore.prediction.run_batches`` (batches rounded up to a multiple of the
replica count; padded rows are dropped by their mask), so every record is
used exactly once and in file order.
"""

import io
import os

import numpy as np
import tensorflow as tf

from howto.milnce_model import (MIXED_5C, TEXT_MODEL, VIDEO_EMBEDDING,
                                VIDEO_MODEL)
from input_pipeline import features as keys
from input_pipeline import milnce as reader
from input_pipeline import records
from vidcore import metrics, prediction
from vidcore.errors import UserInputError
from vidcore.files import write_bytes_atomic
from vidcore.progress import Progbar

LAYERS = (MIXED_5C, VIDEO_EMBEDDING)
PROBE_EXTRA_HINT = "pip install 'vidmodels[probe]'"


# -- running the model --------------------------------------------------------


def _strategy_batch(batch_size, strategy):
    """(strategy, global batch rounded up to a multiple of the replicas)."""
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    return strategy, -(-int(batch_size) // replicas) * replicas


def _with_options(dataset, options):
    return dataset if options is None else dataset.with_options(options)


def _progress_bar(files, progress, unit):
    """A progress bar over the records of ``files`` (None when off)."""
    if not progress:
        return None
    return Progbar(records.manifest_record_count(files), unit_name=unit)


def _embed_windows(video_model, video):
    """Runs the trunk on every window of every video.

    Args:
        video_model: the ``s3dg`` sub-model.
        video: float32 [B, W, T, S, S, 3].

    Returns:
        dict of float32 [B, W, C] per trunk output.
    """
    shape = tf.shape(video)
    # [B, W, T, S, S, 3] -> [B*W, T, S, S, 3]
    flat = tf.reshape(video, tf.concat([[-1], shape[2:]], 0))
    out = video_model(flat, training=False)
    return {name: tf.reshape(tf.cast(value, tf.float32),
                             [shape[0], shape[1], -1])  # [B, W, C]
            for name, value in out.items()}


def _run(strategy, dataset, replica_fn, bar):
    """Yields run_batches' outputs, their padding rows dropped."""
    for out in prediction.run_batches(strategy, dataset.map(lambda e: (e,)),
                                      replica_fn):
        keep = out.pop("mask").astype(bool)
        out = {k: v[keep] for k, v in out.items()}
        if bar is not None:
            bar.add(int(keep.sum()))
        yield out


def _concat(batches, names):
    """{name: rows of every batch concatenated}."""
    batches = list(batches)
    return {k: np.concatenate([b[k] for b in batches]) for k in names}


def embed_retrieval(model, files, cfg, batch_size, encoder, strategy=None,
                    progress=False, options=None):
    """Embeds the first caption and the evaluation windows of every record.

    Args:
        model: a MIL-NCE model (``build_milnce_model``), built in
            ``strategy``'s scope.
        files: shard paths (MSR-VTT / YouCook2 records).
        cfg: ``input_pipeline.milnce.MilNCEClipConfig`` of the evaluation
            (num_windows_test, num_frames, fps, video_size, max_words).
        batch_size: records per global batch (rounded up to a multiple of
            the replica count).
        encoder: ``vidcore.text.TextEncoder`` (ids) of the model's words.
        strategy: tf.distribute.Strategy (default: the current one).
        progress: show a progress bar.
        options: tf.data.Options for the reader (e.g. its thread pool).

    Returns:
        (text [N, D], video [N, D], ids): float32 numpy arrays in record
        order, the video embedding being the mean over the windows of
        ``video_embedding``, and the records' media ids (list of str).
    """
    strategy, batch_size = _strategy_batch(batch_size, strategy)
    video_model = model.get_layer(VIDEO_MODEL)
    text_model = model.get_layer(TEXT_MODEL)
    dataset = _with_options(
        reader.retrieval_dataset(files, cfg, batch_size, encoder), options)

    def replica_fn(element):
        windows = _embed_windows(video_model, element["video"])
        text = tf.cast(text_model(element["text"], training=False),
                       tf.float32)  # [B, D]
        return {"text": text,
                "video": tf.reduce_mean(windows["video_embedding"], axis=1),
                "index": element["index"], "mask": element["mask"]}

    bar = _progress_bar(files, progress, "video")
    out = _concat(_run(strategy, dataset, replica_fn, bar),
                  ("text", "video", "index"))
    if bar is not None:
        bar.finish()
    ids = reader.video_ids(files)
    _check_order(out["index"], len(ids), files)
    return out["text"], out["video"], ids


def _check_order(index, num_records, files):
    """Every record once, in file order (the reader's contract)."""
    if not np.array_equal(index, np.arange(num_records)):
        raise AssertionError(
            f"the evaluation reader gave record indices {index[:10]}... "
            f"for {num_records} records of {files[:3]}...: expected every "
            "record once, in order")


def retrieval_results(text, video, ties="pessimistic"):
    """Text-to-video retrieval metrics of paired embeddings.

    Caption i's true clip is clip i; scores are ``text @ video^T`` (the
    original's ``compute_metrics(np.dot(text, video.T))``), ranked by
    ``vidcore.metrics.retrieval_ranks``.

    Args:
        text: float [N, D] caption embeddings.
        video: float [N, D] clip embeddings, row i paired with text row i.
        ties: rank of the true clip among equal scores ("pessimistic",
            "optimistic" or "index").

    Returns:
        dict: "R@1", "R@5", "R@10" (percent), "MedR" (1-based median
        rank), "MeanR", "num_queries".
    """
    if len(text) != len(video):
        raise ValueError(f"{len(text)} captions but {len(video)} clips")
    return metrics.retrieval_metrics(
        metrics.retrieval_ranks(text, video, ties=ties))


def hmdb_features(model, files, cfg, batch_size, strategy=None,
                  progress=False, options=None):
    """Per-window ``mixed_5c`` features of HMDB-51 records.

    Args:
        model: a MIL-NCE model, built in ``strategy``'s scope.
        files: shard paths of HMDB-51 records (label and splits).
        cfg: ``MilNCEClipConfig`` (num_windows_test, num_frames,
            video_size).
        batch_size: videos per global batch.
        strategy: tf.distribute.Strategy (default: the current one).
        progress: show a progress bar.
        options: tf.data.Options for the reader.

    Returns:
        (features float32 [N, W, 1024], labels int32 [N], splits int32
        [N, 3]: 0 unused, 1 train, 2 test in the official splits 1-3).
    """
    strategy, batch_size = _strategy_batch(batch_size, strategy)
    video_model = model.get_layer(VIDEO_MODEL)
    dataset = _with_options(
        reader.classification_dataset(files, cfg, batch_size), options)

    def replica_fn(element):
        windows = _embed_windows(video_model, element["video"])
        return {"features": windows["mixed_5c"],  # [B, W, 1024]
                "label": element["label"], "splits": element["splits"],
                "index": element["index"], "mask": element["mask"]}

    bar = _progress_bar(files, progress, "video")
    out = _concat(_run(strategy, dataset, replica_fn, bar),
                  ("features", "label", "splits", "index"))
    if bar is not None:
        bar.finish()
    _check_order(out["index"], len(out["index"]), files)
    return out["features"], out["label"], out["splits"]


def linear_svc_class():
    """scikit-learn's LinearSVC, imported on first use (an optional extra)."""
    try:
        from sklearn.svm import LinearSVC
    except ImportError:
        raise UserInputError(
            f"the HMDB-51 linear probe needs scikit-learn: "
            f"{PROBE_EXTRA_HINT}") from None
    return LinearSVC


def _class_scores(svm, x):
    """decision_function as [n, n_classes] (two columns for two classes)."""
    scores = svm.decision_function(x)
    if scores.ndim == 1:  # binary: positive = classes_[1]
        scores = np.stack([-scores, scores], axis=1)  # [n, 2]
    return scores


def linear_probe(features, labels, splits, C=100.0, random_state=0):
    """The HMDB-51 linear probe of the original ``eval_hmdb.py``.

    For each split s (column of ``splits``): a ``LinearSVC(C)`` is fit on
    the windows of the videos with ``splits[:, s] == 1`` (one row per
    window, the video's label repeated); the decision values of the windows
    of each video with ``splits[:, s] == 2`` are summed over its windows and
    the class with the largest sum is predicted.

    Args:
        features: float [N, W, F] per-window features.
        labels: int [N] class of each video.
        splits: int [N, S] 0 unused, 1 train, 2 test, per split.
        C: SVM regularisation (100 in the paper).
        random_state: seed of LinearSVC's coordinate descent.

    Returns:
        dict: "split<k>" -> top-1 accuracy (fraction) for each split k
        (1-based) that has training and test videos, "mean" -> their mean,
        "num_test" -> {"split<k>": test videos}.

    Raises:
        UserInputError: scikit-learn missing, or no split has both training
            and test videos.
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels)
    splits = np.asarray(splits)
    if features.ndim != 3 or not (len(features) == len(labels)
                                   == len(splits)):
        raise ValueError(f"features [N, W, F] {features.shape}, labels "
                         f"{labels.shape} and splits {splits.shape} differ")
    linear_svc = linear_svc_class()
    num_videos, num_windows, dim = features.shape
    results, num_test = {}, {}
    for s in range(splits.shape[1]):
        train = np.flatnonzero(splits[:, s] == 1)
        test = np.flatnonzero(splits[:, s] == 2)
        if len(train) == 0 or len(test) == 0:
            continue
        x_train = features[train].reshape(-1, dim)  # [n_train * W, F]
        y_train = np.repeat(labels[train], num_windows)  # [n_train * W]
        svm = linear_svc(C=C, random_state=random_state)
        svm.fit(x_train, y_train)
        scores = _class_scores(svm, features[test].reshape(-1, dim))
        # [n_test * W, classes] -> [n_test, classes]
        scores = scores.reshape(len(test), num_windows, -1).sum(axis=1)
        predicted = svm.classes_[np.argmax(scores, axis=1)]
        results[f"split{s + 1}"] = float(np.mean(predicted == labels[test]))
        num_test[f"split{s + 1}"] = int(len(test))
    if not results:
        raise UserInputError(
            f"no split has both training and test videos among the "
            f"{num_videos} videos (splits: 1 train, 2 test)")
    results["mean"] = float(np.mean(list(results.values())))
    results["num_test"] = num_test
    return results


def format_probe_table(results):
    """Top-1 per split and their mean, as a small text table."""
    names = [k for k in results if k.startswith("split")] + ["mean"]
    lines = [f"{'split':<6}  {'top-1 (%)':>9}"]
    lines += [f"{name.replace('split', ''):<6}  {100 * results[name]:>9.1f}"
              for name in names]
    return "\n".join(lines)


# -- feature extraction -------------------------------------------------------

FORMATS = ("npz", "tfrecord")
FEATURE_SHARD = "features-00000-of-00001.tfrecord"


def feature_file_name(media_id):
    """The ``.npz`` file of a video: its media id made a safe file name."""
    name = media_id.replace("/", "_").replace("\\", "_").lstrip(".")
    return (name or "video") + ".npz"


def _video_arrays(rows, layers):
    """{layer: float32 [n_windows, dim], "start_time": [n_windows]}."""
    arrays = {layer: np.concatenate(rows[layer]) for layer in layers}
    arrays["start_time"] = np.concatenate(rows["start_time"])
    return arrays


class _NpzFiles:
    """One ``<media id>.npz`` per video, each written atomically."""

    def __init__(self, output_dir, ids):
        names = {}
        for media_id in ids:
            name = feature_file_name(media_id)
            if name in names:
                raise UserInputError(
                    f"videos {names[name]!r} and {media_id!r} would both be "
                    f"written to {name} in {output_dir}")
            names[name] = media_id
        self.output_dir = output_dir
        self.paths = []

    def write(self, media_id, arrays):
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path = os.path.join(self.output_dir, feature_file_name(media_id))
        write_bytes_atomic(path, buffer.getvalue())
        self.paths.append(path)

    def close(self):
        return self.paths


def make_feature_example(media_id, arrays):
    """One video's features as a SequenceExample (keys of
    ``input_pipeline.features``, "MIL-NCE features").

    Args:
        media_id: the video id.
        arrays: {layer: float [n_windows, dim], "start_time": [n_windows]}.

    Returns:
        tf.train.SequenceExample.
    """
    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(
            value=np.asarray(values, np.float32).ravel()))

    layers = [k for k in arrays if k != "start_time"]
    context = {keys.VIDEO_MEDIA_ID: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[media_id.encode("utf-8")]))}
    lists = {keys.MILNCE_WINDOW_START: tf.train.FeatureList(
        feature=[floats([t]) for t in arrays["start_time"]])}
    for layer in layers:
        context[keys.milnce_feature_dim_key(layer)] = tf.train.Feature(
            int64_list=tf.train.Int64List(value=[arrays[layer].shape[1]]))
        lists[keys.milnce_feature_key(layer)] = tf.train.FeatureList(
            feature=[floats(row) for row in arrays[layer]])
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=lists))


def parse_feature_example(serialized):
    """Reads a record of :func:`make_feature_example` (numpy side).

    Returns:
        (media id, {layer: float32 [n_windows, dim], "start_time":
        float32 [n_windows]}).
    """
    example = tf.train.SequenceExample.FromString(serialized)
    context = example.context.feature
    media_id = context[keys.VIDEO_MEDIA_ID].bytes_list.value[0].decode()
    lists = example.feature_lists.feature_list
    arrays = {"start_time": np.array(
        [f.float_list.value[0] for f in
         lists[keys.MILNCE_WINDOW_START].feature], np.float32)}
    for layer in LAYERS:
        key = keys.milnce_feature_key(layer)
        if key in lists:
            dim_key = keys.milnce_feature_dim_key(layer)
            dim = context[dim_key].int64_list.value[0]
            arrays[layer] = np.array(
                [list(f.float_list.value) for f in lists[key].feature],
                np.float32).reshape(-1, dim)  # [n_windows, dim]
    return media_id, arrays


class _FeatureShard:
    """All videos as records of one shard, renamed into place when done."""

    def __init__(self, output_dir):
        self.path = os.path.join(output_dir, FEATURE_SHARD)
        self.partial = os.path.join(output_dir, f".{FEATURE_SHARD}.partial")
        self.writer = tf.io.TFRecordWriter(self.partial)

    def write(self, media_id, arrays):
        self.writer.write(make_feature_example(media_id, arrays)
                          .SerializeToString(deterministic=True))

    def close(self):
        self.writer.close()
        tf.io.gfile.rename(self.partial, self.path, overwrite=True)
        return [self.path]


def _video_groups(batches):
    """Yields (video index, {key: [row blocks]}) per video, in order."""
    current, rows = None, None
    for out in batches:
        for v in np.unique(out["video_index"]):  # sorted = in order
            take = out["video_index"] == v
            if v != current:
                if current is not None:
                    yield current, rows
                current, rows = int(v), {}
            for key, value in out.items():
                rows.setdefault(key, []).append(value[take])
    if current is not None:
        yield current, rows


def extract_features(model, files, cfg, batch_size, output_dir,
                     layers=LAYERS, format="npz", strategy=None,
                     progress=True, options=None):
    """Writes the trunk's features of every window of every video.

    Windows are those of ``input_pipeline.milnce.feature_windows_dataset``:
    consecutive, non-overlapping ``num_frames`` frames at ``fps`` covering
    each whole video (the last one zero-padded), centre square crop resized
    to ``video_size``.

    Args:
        model: a MIL-NCE model, built in ``strategy``'s scope.
        files: shard paths of raw-video records.
        cfg: ``MilNCEClipConfig`` (num_frames, fps, video_size).
        batch_size: windows per global batch.
        output_dir: output folder (created).
        layers: trunk outputs to save ("mixed_5c", "video_embedding").
        format: "npz": one ``<media id>.npz`` per video (one float32 array
            [n_windows, dim] per layer, and "start_time" [n_windows]);
            "tfrecord": one record per video (:func:`make_feature_example`)
            in ``features-00000-of-00001.tfrecord``.
        strategy: tf.distribute.Strategy (default: the current one).
        progress: show a progress bar (videos).
        options: tf.data.Options for the reader.

    Returns:
        list of the written paths (npz: in record order).

    Raises:
        UserInputError: an unknown layer or format, or two videos with the
            same ``.npz`` file name.
    """
    layers = tuple(layers)
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown or not layers:
        raise UserInputError(f"--layers: {unknown or 'none'}; choose from "
                             f"{', '.join(LAYERS)}")
    if format not in FORMATS:
        raise UserInputError(f"--format={format}: choose from "
                             f"{', '.join(FORMATS)}")
    ids = reader.video_ids(files)
    strategy, batch_size = _strategy_batch(batch_size, strategy)
    video_model = model.get_layer(VIDEO_MODEL)
    dataset = _with_options(
        reader.feature_windows_dataset(files, cfg, batch_size), options)

    def replica_fn(element):
        out = video_model(element["video"], training=False)
        result = {layer: tf.cast(out[layer], tf.float32) for layer in layers}
        for key in ("video_index", "window_index", "start_time", "mask"):
            result[key] = element[key]
        return result

    tf.io.gfile.makedirs(output_dir)
    sink = (_NpzFiles(output_dir, ids) if format == "npz"
            else _FeatureShard(output_dir))
    bar = Progbar(len(ids), unit_name="video") if progress else None
    done = 0
    for video_index, rows in _video_groups(
            _run(strategy, dataset, replica_fn, None)):
        windows = np.concatenate(rows["window_index"])
        if (video_index != done
                or not np.array_equal(windows, np.arange(len(windows)))):
            raise AssertionError(
                f"feature windows out of order at video {video_index} "
                f"({ids[video_index]!r}): windows {windows[:10]}")
        sink.write(ids[video_index], _video_arrays(rows, layers))
        done += 1
        if bar is not None:
            bar.add(1)
    if bar is not None:
        bar.finish()
    if done != len(ids):
        raise AssertionError(f"features of {done} of {len(ids)} videos "
                             "were extracted")
    return sink.close()
