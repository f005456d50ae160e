"""Text-to-video retrieval: ``python -m howto.eval``.

Evaluates a trained model (``--checkpoint_dir``, whose model_config.json
gives the architecture and word vectors) or the authors' released PyTorch
model (``--pretrain_path=howto100m_pt_model.pth --embd_dim=6144``, as in
their eval command) on MSR-VTT 1k-A, YouCook2 validation and LSMDC test:

    python -m howto.eval --eval_msrvtt=1 --msrvtt_test_path=msrvtt/test-* \\
        --eval_youcook=1 --youcook_val_path=youcook/val-* \\
        --checkpoint_dir=ckpt --output_json=retrieval.json

Prints R@1, R@5, R@10 (percent of queries) and median rank (1-based) per
set as a table; ties count against the model (``--ties``).

With ``--strategy=multi_worker`` (TF_CONFIG), each chief/worker process
embeds a block of every set's shards and the chief joins them (in shard
order, so the metrics are those of one process) through hidden files beside
``--output_json`` (vidcore.eval_workers).
"""

import os

import numpy as np
from absl import flags, logging

from howto import evaluation
from howto import flags as hflags
from howto import weights
from howto.models import build_model
from input_pipeline import howto as reader
from input_pipeline import records
from vidcore import cli, distribute, eval_workers, metrics
from vidcore import files as files_lib
from vidcore.files import write_json_atomic
from vidcore.errors import UserInputError

FLAGS = hflags.FLAGS
flags.DEFINE_string(
    "output_json",
    "",
    "Write the metrics here as JSON (default: "
    "<checkpoint_dir>/retrieval.json when evaluating a "
    "checkpoint directory).",
    flag_values=FLAGS,
)
eval_workers.define_flags(FLAGS)


def model_and_vectors():
    """(ModelConfig, weights path, word2vec path, PyTorch state dict or
    None) from the flags and the checkpoint directory's record (or the
    state dict's shapes)."""
    cfg = hflags.model_config_from_flags()
    word2vec = FLAGS.word2vec_path
    if FLAGS.pretrain_path and not weights.is_torch_checkpoint(
            FLAGS.pretrain_path):
        return cfg, FLAGS.pretrain_path, word2vec, None
    state = None
    if FLAGS.pretrain_path:  # sizes from the PyTorch state dict itself
        from howto import convert_torch  # torch is an optional extra
        source = FLAGS.pretrain_path
        state = convert_torch.read_state_dict(source)
        found = convert_torch.infer_config(state, max_words=cfg.max_words)
        vectors = ""
    else:
        source = FLAGS.checkpoint_dir
        record = hflags.read_model_record(source)
        if record is None:
            raise UserInputError(
                f"--checkpoint_dir={source} has no "
                f"{hflags.MODEL_CONFIG_FILE}; train there first, or pass "
                f"--pretrain_path"
            )
        found, vectors = record
    for name, value in cfg.to_dict().items():
        if FLAGS[name].present and getattr(found, name) != value:
            logging.warning("--%s=%s ignored: the model in %s has %s", name,
                            value, source, getattr(found, name))
    return found, source, word2vec or vectors, state


def main(argv):
    del argv
    hflags.check_release_file_flags()
    sets = hflags.eval_sets_from_flags()
    if not sets:
        raise UserInputError(
            "nothing to evaluate: pass --eval_msrvtt=1, "
            "--eval_youcook=1 and/or --eval_lsmdc=1 with "
            "their shard globs"
        )
    cfg, weights_path, word2vec, state = model_and_vectors()
    workers = eval_workers.Workers.from_strategy(FLAGS.strategy)
    output = FLAGS.output_json or (
        os.path.join(FLAGS.checkpoint_dir, "retrieval.json")
        if not FLAGS.pretrain_path
        else ""
    )
    workers.check_shared_output(output, "--output_json")
    strategy = distribute.make_strategy(
        workers.local_strategy_name(FLAGS.strategy), FLAGS.tpu)
    encoder = weights.text_encoder(word2vec, cfg.we_dim)
    set_files, clip_cfg = {}, None
    for name, pattern in sets.items():
        files = records.list_files(pattern, name)
        streams, dims = reader.detect_streams(files, "clips")
        if sum(dims) != cfg.feature_dim:
            raise UserInputError(
                f"{name}: the shards hold streams {streams} of sizes {dims} "
                f"but the model takes {cfg.feature_dim}-d clip features"
            )
        set_files[name] = files
        clip_cfg = reader.ClipConfig(
            streams=streams, dims=dims, max_words=cfg.max_words
        )
    with strategy.scope():
        model = build_model(cfg)
    loaded = weights.load_pretrained(model, weights_path, state)
    logging.info("weights from %s", loaded)
    embeddings = embed_by_workers(strategy, model, set_files, clip_cfg,
                                  encoder, workers, output, str(loaded))
    if embeddings is None:  # another worker: the chief reports
        return None
    results = evaluation.retrieval_results(
        embeddings, ties=FLAGS.ties, video_to_text=FLAGS.video_to_text)
    print(metrics.format_retrieval_table(results))
    if output:
        write_json_atomic(output, {
            "weights": str(loaded), "ties": FLAGS.ties,
            "recall_unit": "percent", "results": results})
        print(f"wrote {output}")
    return results


def embed_by_workers(strategy, model, set_files, clip_cfg, encoder, workers,
                     output, weights_source):
    """Embeds every set; with several workers each embeds its block of
    every set's shards and the chief joins them in shard order.

    Returns:
        {set name: (text, video)} on the chief, None on other workers.
    """
    names = list(set_files)
    exchange = eval_workers.ShareExchange(
        workers, files_lib.parent_dir(output or "."), "howto-eval",
        eval_workers.run_key("howto.eval", set_files, weights_source),
        FLAGS.worker_timeout_secs)

    def compute():
        mine = {name: workers.shard_files(files)
                for name, files in set_files.items()}
        found = evaluation.embed_sets(strategy, model, mine, clip_cfg,
                                      encoder, FLAGS.batch_size_val)
        return {f"{kind}_{i}": found[name][j] for i, name in enumerate(names)
                for j, kind in enumerate(("text", "video"))}

    share, shares = eval_workers.share_work(workers, exchange, compute)
    workers.announce(sum(len(share[f"text_{i}"])
                         for i in range(len(names))), unit="clips")
    if shares is None:
        return None
    exchange.remove()

    def joined(key):
        parts = [s[key] for s in shares if s[key].size]
        return np.concatenate(parts) if parts else shares[0][key]

    return {name: (joined(f"text_{i}"), joined(f"video_{i}"))
            for i, name in enumerate(names)}


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
