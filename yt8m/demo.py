"""Quick-start demo: the whole YouTube-8M workflow on a small SYNTHETIC dataset.

``python -m yt8m.demo --workdir=demo_out`` runs, as separate commands that it
prints so they can be copied:

1. write the demo shards (official frame-level format, synthetic features);
2. train two different small models (gated NetVLAD and gated DBoF);
3. evaluate both on the validation split (GAP, mAP, Hit@1, PERR);
4. write Kaggle prediction files for the validation and test splits;
5. fit ensemble weights on the validation predictions and write the
   ensembled test submission, reporting the ensemble's validation GAP.

It takes a few minutes on two CPU cores. The data is synthetic: the numbers
show that the pipeline learns, not how the models do on YouTube-8M.
"""

import json
import os

import numpy as np
from absl import flags

from vidcore import cli, demo_steps

FLAGS = flags.FLAGS



def define_flags():
    """Flags of this CLI (defined only when it runs, so that importing the
    module does not clash with other tools' flags)."""
    flags.DEFINE_string("workdir", "demo_out",
                        "Where data, models and files go.")
    flags.DEFINE_integer("train_steps", 300, "Training steps per model.")
    flags.DEFINE_integer("num_classes", 100, "Classes of the synthetic data.")
    flags.DEFINE_integer("num_train", 600, "Training videos.")
    flags.DEFINE_bool("quick", False,
                      "Tiny run for tests (few steps, few videos).")


COMMON = ["--frame_features=True", "--feature_names=rgb,audio",
          "--feature_sizes=1024,128"]
MODELS = {
    "gated_netvlad": [
        "--model=NetVLADModelLF", "--netvlad_cluster_size=16",
        "--netvlad_hidden_size=256", "--netvlad_relu=False", "--gating=True",
        "--moe_prob_gating=True", "--iterations=30"],
    "gated_dbof": [
        "--model=GatedDbofModelLF", "--dbof_cluster_size=256",
        "--dbof_hidden_size=256", "--dbof_relu=False", "--iterations=30"],
}


def _run(args, log):
    return demo_steps.run_step(args, log)


def _chance_gap(labels_file, num_classes, top_k=20, seed=0):
    """GAP of random scores on the validation labels (the chance level)."""
    from vidcore import metrics
    from yt8m import submission
    ids, label_lists = submission.read_labels(labels_file)
    labels = np.zeros((len(ids), num_classes), bool)
    for row, classes in enumerate(label_lists):
        labels[row, list(classes)] = True
    scores = np.random.default_rng(seed).random(labels.shape)
    return metrics.global_average_precision(scores, labels, top_k)


def main(argv):
    del argv
    work = os.path.abspath(FLAGS.workdir)
    os.makedirs(work, exist_ok=True)
    log = os.path.join(work, "demo.log")
    open(log, "w").close()
    steps = 30 if FLAGS.quick else FLAGS.train_steps
    data = os.path.join(work, "data")
    print("YouTube-8M quick start on a SYNTHETIC dataset "
          "(official frame-level format; features are synthetic)")
    _run(["-m", "tfrecord_tools.demo_data", f"--output_dir={data}",
          f"--num_classes={FLAGS.num_classes}",
          f"--num_train={120 if FLAGS.quick else FLAGS.num_train}",
          f"--num_validate={60 if FLAGS.quick else 200}",
          f"--num_test={40 if FLAGS.quick else 100}"], log)
    val = os.path.join(data, "validate0*.tfrecord")
    test = os.path.join(data, "test0*.tfrecord")
    results = {}
    val_files, test_files = [], []
    for name, model_flags in MODELS.items():
        train_dir = os.path.join(work, "models", name)
        _run(["-m", "yt8m.train",
              f"--train_data_pattern={os.path.join(data, 'train*.tfrecord')}",
              f"--train_dir={train_dir}", *COMMON, *model_flags,
              f"--num_classes={FLAGS.num_classes}", "--batch_size=32",
              "--base_learning_rate=0.002", "--bn_momentum=0.9",
              f"--max_steps={steps}", f"--log_every_steps={max(steps // 5, 1)}",
              "--start_new_model"], log)
        _run(["-m", "yt8m.eval", f"--eval_data_pattern={val}",
              f"--train_dir={train_dir}", "--batch_size=64"], log)
        with open(os.path.join(train_dir, "eval",
                               f"metrics_step{steps}.json")) as f:
            results[name] = json.load(f)
        val_file = os.path.join(work, f"validate-{name}.csv")
        test_file = os.path.join(work, f"test-{name}.csv")
        _run(["-m", "yt8m.inference", f"--input_data_pattern={val}",
              f"--train_dir={train_dir}", f"--output_file={val_file}",
              f"--output_labels_file={os.path.join(work, 'validate-labels.csv')}",
              "--top_k=50", "--batch_size=64"], log)
        _run(["-m", "yt8m.inference", f"--input_data_pattern={test}",
              f"--train_dir={train_dir}", f"--output_file={test_file}",
              "--top_k=50", "--batch_size=64"], log)
        val_files.append(val_file)
        test_files.append(test_file)
    weights = os.path.join(work, "ensemble-weights.json")
    _run(["-m", "yt8m.ensemble", f"--input_files={','.join(val_files)}",
          f"--labels_file={os.path.join(work, 'validate-labels.csv')}",
          "--fit_weights", f"--weights_output={weights}",
          f"--output_file={os.path.join(work, 'validate-ensemble.csv')}",
          f"--num_classes={FLAGS.num_classes}"], log)
    with open(weights) as f:
        fitted = json.load(f)
    submission_file = os.path.join(work, "submission.csv")
    _run(["-m", "yt8m.ensemble", f"--input_files={','.join(test_files)}",
          f"--weights={','.join(str(w) for w in fitted['weights'])}",
          f"--output_file={submission_file}",
          f"--num_classes={FLAGS.num_classes}"], log)

    chance = _chance_gap(os.path.join(work, "validate-labels.csv"),
                         FLAGS.num_classes)
    print("\nValidation results (synthetic data):")
    print(f"  {'model':<16} {'GAP@20':>8} {'mAP':>8} {'Hit@1':>8}")
    for name, r in results.items():
        print(f"  {name:<16} {r['gap']:8.4f} {r['map']:8.4f} "
              f"{r['hit_at_one']:8.4f}")
    print(f"  {'ensemble':<16} {fitted['ensemble_gap']:8.4f}")
    print(f"  {'chance':<16} {chance:8.4f}   (random scores)")
    print(f"\nKaggle submission: {submission_file}\nLog: {log}")
    print(demo_steps.tensorboard_hint(os.path.join(work, "models")))


def run():
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    run()
