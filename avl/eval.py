"""Retrieval with an AVLnet model: ``python -m avl.eval``.

Evaluates a trained model (``--checkpoint_dir``: its model_config.json
gives the architecture, avl_run.json the word vectors) or released weights
(``--pretrain_path=AVLnet_release.pth``, the variant and sizes read from
the state dict, or a directory from avl.convert_torch) on YouCook2 (or
CrossTask / YouCook-Japanese through the YouCook2 flags) and MSR-VTT 1k-A:

    python -m avl.eval --eval_msrvtt=1 --msrvtt_test_path=shards/msrvtt_test-* \\
        --pretrain_path=model/AVLnet_release/AVLnet_release.pth

Prints R@1, R@5, R@10 (percent) and the median rank per set: audio -> video
(AVLnet), audio+text -> video (Text-Fused) or text -> audio+video
(Text-Tri); ``--eval_lang_retrieval=1`` ranks the other way. MSR-VTT test
clips without audio count as misses (recall over ``--msrvtt_test_clips``,
1000), and the output says how many there were. Audio lengths follow the
original's multiplier flags (YouCook2 5 x 1024 frames, MSR-VTT 3 x 1024).
"""

import os

from absl import flags, logging

from avl import evaluation
from avl import flags as aflags
from avl import weights
from avl.models import build_model
from howto import weights as howto_weights
from vidcore import cli, distribute
from vidcore.errors import UserInputError
from vidcore.files import write_json_atomic

FLAGS = aflags.FLAGS
flags.DEFINE_string("output_json", "",
                    "Write the metrics here as JSON (default: "
                    "<checkpoint_dir>/retrieval.json when evaluating a "
                    "checkpoint directory).", flag_values=FLAGS)


def model_and_weights():
    """(AVLConfig, weights path, word2vec path, state dict or None) of the
    weights to evaluate; the architecture flags are only a fallback."""
    path = FLAGS.pretrain_path or FLAGS.checkpoint_dir
    flag_cfg = aflags.model_config_from_flags()
    state = (weights.read_state_dict(path)
             if weights.is_torch_checkpoint(path) else None)
    stored = weights.stored_config(
        path, state, flag_cfg.max_words,
        fuse_videoaudio_additive=flag_cfg.fuse_videoaudio_additive)
    if stored is None:
        if not FLAGS.pretrain_path:
            raise UserInputError(
                f"--checkpoint_dir={path} has no "
                f"{aflags.MODEL_CONFIG_FILE}; train there first, or pass "
                f"--pretrain_path")
        logging.info("%s has no %s: the model flags give the architecture",
                     path, aflags.MODEL_CONFIG_FILE)
        return flag_cfg, path, FLAGS.word2vec_path, state
    cfg, word2vec = stored
    for name in weights.ARCHITECTURE:
        if FLAGS[name].present and getattr(cfg, name) != getattr(flag_cfg,
                                                                 name):
            logging.warning("--%s=%s ignored: the model in %s has %s", name,
                            FLAGS[name].value, path, getattr(cfg, name))
    return cfg, path, FLAGS.word2vec_path or word2vec, state


def main(argv):
    del argv
    aflags.check_flags()
    if not aflags.eval_sets_from_flags():
        raise UserInputError("nothing to evaluate: pass --eval_youcook=1 "
                             "and/or --eval_msrvtt=1 with their shard globs")
    cfg, path, word2vec, state = model_and_weights()
    strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.tpu)
    sets = aflags.eval_sets(cfg)
    encoder = (howto_weights.text_encoder(word2vec, cfg.we_dim)
               if cfg.tri_modal else None)
    with strategy.scope():
        model = build_model(cfg)
    loaded = weights.load_pretrained(model, path, state)
    logging.info("weights from %s", loaded)
    results = evaluation.evaluate_sets(
        strategy, model, cfg, sets, encoder, FLAGS.batch_size_val,
        lang_retrieval=bool(FLAGS.eval_lang_retrieval), ties=FLAGS.ties)
    print(evaluation.report(results))
    output = FLAGS.output_json or (
        "" if FLAGS.pretrain_path
        else os.path.join(FLAGS.checkpoint_dir, "retrieval.json"))
    if output:
        write_json_atomic(output, {
            "weights": str(loaded), "model": cfg.variant, "ties": FLAGS.ties,
            "recall_unit": "percent", "results": results})
        print(f"wrote {output}")
    return results


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
