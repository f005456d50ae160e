"""Losses shared by the families (per-example form, for tf.distribute).

Every loss returns one value per example; the training loop divides the sum
by the global batch size (``tf.nn.compute_average_loss``), which gives the
batch mean on one device and the same number under any strategy.
"""

import tensorflow as tf


def multilabel_cross_entropy(labels, probabilities, epsilon=1e-5):
    """Binary cross-entropy on probabilities, summed over classes.

    ``-sum_v [y_v log(p_v + eps) + (1 - y_v) log(1 - p_v + eps)]`` with
    ``eps = 1e-5``: the YouTube-8M starter / Kaggle-winner form (the loss
    takes probabilities, not logits, because MoE outputs are mixtures).

    Args:
        labels: [batch, classes] multi-hot (any numeric or bool dtype).
        probabilities: [batch, classes] in [0, 1].
        epsilon: added inside both logarithms.

    Returns:
        float32 [batch].
    """
    p = tf.cast(probabilities, tf.float32)
    y = tf.cast(labels, tf.float32)
    xent = y * tf.math.log(p + epsilon) + (1.0 - y) * tf.math.log(
        1.0 - p + epsilon)
    return -tf.reduce_sum(xent, axis=-1)


# --------------------------------------------------------------------------- #
# Max-margin ranking loss (HowTo100M, Miech et al. ICCV 2019, Sec. 4.1).
# --------------------------------------------------------------------------- #
def negative_weight_values(num_videos, hard_negative_rate):
    """Weights of same-video and other-video pairs in the weighted loss.

    With ``e = 1 - hard_negative_rate`` and
    ``alpha = e / ((B - 1)(1 - e))`` the weight matrix is
    ``kron((1 - alpha) I_B + alpha 1 1^T, ones(P, P)) * B (1 - e)``: a pair of
    clips from the same video weighs ``B (1 - e)``, a pair from different
    videos ``alpha B (1 - e)``, so that the same-video pairs (the positive
    included) and the other-video pairs carry ``hard_negative_rate`` and
    ``1 - hard_negative_rate`` of the total weight.

    Args:
        num_videos: B, videos in the (global) batch; > 1. A Python number
            (checked) or a float tensor (e.g. known only inside a replica
            function).
        hard_negative_rate: r in (0, 1).

    Returns:
        (same_video_weight, other_video_weight), of num_videos' type.
    """
    if isinstance(num_videos, (int, float)) and num_videos < 2:
        raise ValueError("negative weighting needs at least 2 videos per "
                         f"batch, got {num_videos}")
    if not 0.0 < hard_negative_rate < 1.0:
        raise ValueError("hard_negative_rate must be in (0, 1), got "
                         f"{hard_negative_rate}")
    easy = 1.0 - hard_negative_rate
    alpha = easy / ((num_videos - 1) * (1.0 - easy))
    scale = num_videos * (1.0 - easy)
    return scale, alpha * scale


def negative_weight_matrix(num_videos, n_pair, hard_negative_rate=0.5):
    """The full [B*P, B*P] weight matrix of the spec (for reference/tests).

    Args:
        num_videos: B.
        n_pair: P clips per video (rows/columns of one video are contiguous).
        hard_negative_rate: r.

    Returns:
        float32 tensor [B*P, B*P].
    """
    same, other = negative_weight_values(num_videos, hard_negative_rate)
    video = tf.range(num_videos * n_pair) // n_pair
    same_video = tf.equal(video[:, None], video[None, :])
    return tf.where(same_video, same, other)


def max_margin_ranking_loss(similarity, margin=0.1, weights=None):
    """Bidirectional max-margin ranking loss over a batch similarity matrix.

    ``mean_ij( relu(m + S_ij - S_ii) + relu(m + S_ij - S_jj) ) * W_ij``
    with rows = text, columns = video and true pairs on the diagonal (the
    diagonal terms, each equal to m, are part of the mean as in the original).

    Args:
        similarity: [N, N] text x video scores.
        margin: m.
        weights: optional [N, N] elementwise weights (negative weighting).

    Returns:
        float32 scalar.
    """
    s = tf.cast(similarity, tf.float32)
    d = tf.linalg.diag_part(s)
    loss = (tf.nn.relu(margin + s - d[:, None])
            + tf.nn.relu(margin + s - d[None, :]))
    if weights is not None:
        loss = loss * tf.cast(weights, tf.float32)
    return tf.reduce_mean(loss)


def cross_replica_max_margin(text, video, n_pair, margin=0.1,
                             negative_weighting=False,
                             hard_negative_rate=0.5):
    """Max-margin ranking loss over the GLOBAL batch, as per-video values.

    Call inside a replica context (``strategy.run``; also works with no
    strategy). Embeddings of all replicas are gathered (the gradient flows
    back to every replica through the gather), so the similarity matrix is
    the one of the whole global batch and the result equals
    :func:`max_margin_ranking_loss` on one device with the global batch. The
    local share is returned per video, scaled so that summing over all
    videos of all replicas and dividing by the global number of videos
    (``tf.nn.compute_average_loss``) gives that loss.

    Args:
        text: [n_local, D] text embeddings; rows of one video contiguous
            (n_local = local videos * n_pair), same row order as ``video``.
        video: [n_local, D] video (clip) embeddings.
        n_pair: P, clips per video.
        margin: m.
        negative_weighting: apply the same-video / other-video weighting.
        hard_negative_rate: r of the weighting.

    Returns:
        float32 [n_local / n_pair] per-video loss values.
    """
    text = tf.cast(text, tf.float32)
    video = tf.cast(video, tf.float32)
    ctx = tf.distribute.get_replica_context()
    text_all = ctx.all_gather(text, axis=0)   # [n, D]
    video_all = ctx.all_gather(video, axis=0)  # [n, D]
    n_local = tf.shape(text)[0]
    n = tf.shape(text_all)[0]
    offset = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * n_local
    rows = offset + tf.range(n_local)  # global index of each local pair
    s_rows = tf.matmul(text, video_all, transpose_b=True)  # S[i, :]
    s_cols = tf.matmul(video, text_all, transpose_b=True)  # S[:, i]^T
    diag = tf.gather(s_rows, rows, axis=1, batch_dims=1)  # S[i, i]
    row_terms = tf.nn.relu(margin + s_rows - diag[:, None])
    col_terms = tf.nn.relu(margin + s_cols - diag[:, None])
    terms = row_terms + col_terms  # [n_local, n]
    if negative_weighting:
        same_w, other_w = negative_weight_values(
            tf.cast(n // n_pair, tf.float32), hard_negative_rate)
        same_video = tf.equal((rows // n_pair)[:, None],
                              (tf.range(n) // n_pair)[None, :])
        terms = terms * tf.where(same_video, same_w, other_w)
    per_pair = tf.reduce_sum(terms, axis=1)  # [n_local]
    # [n_local] -> [local videos, n_pair]: sum each video's clips.
    per_video = tf.reduce_sum(tf.reshape(per_pair, [-1, n_pair]), axis=1)
    nf = tf.cast(n, tf.float32)
    global_videos = tf.cast(n // n_pair, tf.float32)
    return per_video * (global_videos / (nf * nf))


# --------------------------------------------------------------------------- #
# MIL-NCE (Miech et al., CVPR 2020, "End-to-End Learning of Visual
# Representations from Uncurated Instructional Videos", Eq. 1).
# --------------------------------------------------------------------------- #
def _milnce_per_example(video, text, video_all, text_all):
    """MIL-NCE terms of some clips of a batch, given the whole batch.

    Args:
        video: [n, D] embeddings of the clips whose terms are wanted.
        text: [n, K, D] their K candidate captions' embeddings.
        video_all: [B, D] every clip of the batch (``video`` among them).
        text_all: [B, K, D] every clip's candidates, same order.

    Returns:
        float32 [n]: ``logsumexp(x[i, :, :], x[:, i, :]) -
        logsumexp_k x[i, i, k]`` with ``x[i, j, k] = video_i . text_jk``.
    """
    n = tf.shape(video)[0]
    # x[i, j, k] for the n clips i and every caption set j: [n, B, K]
    rows = tf.einsum("id,jkd->ijk", video, text_all)
    # x[j, i, k]: every clip j against the captions of clip i: [n, B, K]
    cols = tf.einsum("jd,ikd->ijk", video_all, text)
    # [n, 2B, K] -> [n, 2BK]; x[i, i, :] is in both halves, as in the
    # original (it concatenates x and its transpose).
    both = tf.reshape(tf.concat([rows, cols], axis=1), [n, -1])
    denominator = tf.reduce_logsumexp(both, axis=1)  # [n]
    positives = tf.einsum("id,ikd->ik", video, text)  # x[i, i, :]: [n, K]
    numerator = tf.reduce_logsumexp(positives, axis=1)  # [n]
    return denominator - numerator


def milnce_loss(video, text):
    """MIL-NCE loss of one batch (the whole batch on one device).

    With ``x[i, j, k] = video_i . text_jk`` (clip i, candidate caption k of
    clip j; no temperature, no normalisation):

        loss = mean_i [ logsumexp(x[i, :, :] ++ x[:, i, :])
                        - logsumexp_k x[i, i, k] ]

    The numerator sums over the K positive candidates (multiple-instance
    learning); the denominator holds every caption scored against clip i
    and clip i's captions scored against every clip, 2BK terms with the
    positives counted twice, exactly as the original ``MILNCELoss``
    (``loss.py`` of the MIL-NCE_HowTo100M code), which is Eq. 1 of the
    paper with the negatives taken from both directions.

    Args:
        video: [B, D] clip embeddings.
        text: [B, K, D] candidate caption embeddings, K per clip.

    Returns:
        float32 scalar.
    """
    video = tf.cast(video, tf.float32)
    text = tf.cast(text, tf.float32)
    return tf.reduce_mean(_milnce_per_example(video, text, video, text))


def cross_replica_milnce(video, text):
    """MIL-NCE over the GLOBAL batch, as per-clip values.

    Call inside a replica context (``strategy.run``; also works with no
    strategy). The video and text embeddings of all replicas are gathered,
    so each clip's negatives come from the whole global batch (as the
    original's ``all_gather`` in ``main_distributed.py``), and the gradient
    flows back to every replica through the gather. The local clips' terms
    are returned: summed over all replicas and divided by the global batch
    (``tf.nn.compute_average_loss``) they give :func:`milnce_loss` of the
    global batch on one device.

    Args:
        video: [B_local, D] clip embeddings of this replica.
        text: [B_local, K, D] their candidate caption embeddings.

    Returns:
        float32 [B_local] per-clip loss values.
    """
    video = tf.cast(video, tf.float32)
    text = tf.cast(text, tf.float32)
    ctx = tf.distribute.get_replica_context()
    video_all = ctx.all_gather(video, axis=0)  # [B, D]
    text_all = ctx.all_gather(text, axis=0)  # [B, K, D]
    return _milnce_per_example(video, text, video_all, text_all)


# --------------------------------------------------------------------------- #
# Masked margin softmax (AVLnet, Rouditchenko et al., Interspeech 2021,
# Sec. 3.2; Ilharco et al. 2019).
# --------------------------------------------------------------------------- #
def masked_margin_softmax(similarity, margin=0.001):
    """Masked margin softmax (MMS) loss of one batch similarity matrix.

    With ``S' = S - margin * I`` (true pairs on the diagonal):

        loss = mean_i [ logsumexp_j S'[i, j] - S'[i, i] ]
             + mean_j [ logsumexp_i S'[i, j] - S'[j, j] ]

    the cross-entropy of the rows and of the columns of S' with the
    diagonal as the targets, each averaged over the batch and the two
    directions summed, as the original ``MMS_loss`` (two ``nll_loss`` means
    added). No temperature; S holds unnormalised dot products.

    Args:
        similarity: [N, N] scores, e.g. audio x video.
        margin: subtracted from the true pairs' scores.

    Returns:
        float32 scalar.
    """
    s = tf.cast(similarity, tf.float32)
    n = tf.shape(s)[0]
    s = s - margin * tf.eye(n)
    labels = tf.range(n)
    rows = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, s)  # [N]
    cols = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels, tf.transpose(s))  # [N]
    return tf.reduce_mean(rows) + tf.reduce_mean(cols)


def cross_replica_mms(a, b, margin=0.001):
    """Masked margin softmax over the GLOBAL batch, as per-example values.

    Call inside a replica context (``strategy.run``; also works with no
    strategy). Both embeddings of all replicas are gathered (the gradient
    flows back to every replica through the gather), so every example is
    scored against the whole global batch, as the original scores the
    outputs that nn.DataParallel gathers. Example i (global row g) gets the
    cross-entropy of row g of ``S' = a_all b_all^T - margin I`` plus that of
    column g: summed over all replicas and divided by the global batch
    (``tf.nn.compute_average_loss``) this is
    :func:`masked_margin_softmax` of the global batch on one device.

    Args:
        a: [n_local, D] row embeddings (e.g. audio) of this replica.
        b: [n_local, D] column embeddings (e.g. video), same example order.
        margin: subtracted from the true pairs' scores.

    Returns:
        float32 [n_local] per-example loss values.
    """
    a = tf.cast(a, tf.float32)
    b = tf.cast(b, tf.float32)
    ctx = tf.distribute.get_replica_context()
    a_all = ctx.all_gather(a, axis=0)  # [n, D]
    b_all = ctx.all_gather(b, axis=0)  # [n, D]
    n_local = tf.shape(a)[0]
    n = tf.shape(a_all)[0]
    offset = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * n_local
    targets = offset + tf.range(n_local)  # global index of each example
    mask = margin * tf.one_hot(targets, n)  # rows of margin * I: [n_local, n]
    s_rows = tf.matmul(a, b_all, transpose_b=True) - mask  # S'[g, :]
    s_cols = tf.matmul(b, a_all, transpose_b=True) - mask  # S'[:, g]^T
    rows = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, s_rows)
    cols = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, s_cols)
    return rows + cols
