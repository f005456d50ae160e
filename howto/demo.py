"""HowTo100M demo: REAL captions, SYNTHETIC features, the whole workflow.

``python -m howto.demo --workdir=demo_out/howto`` runs, as separate commands
that it prints so they can be copied:

1. write release-format files (tfrecord_tools.howto_demo_data): 436
   "videos" carrying the real YouCook2 validation captions with their real
   times, and the real 1,000 MSR-VTT 1k-A test captions; all 2D/3D features
   are SYNTHETIC, a noisy function of the caption words;
2. convert the videos to sharded SequenceExamples (2 worker processes) and
   the MSR-VTT test set to clip Examples, as one would the real release;
3. train the joint embedding with HowTo100M's sampler and loss (n_pair
   clips per video, negative weighting), evaluating on MSR-VTT every epoch;
4. evaluate the final model (text->video and video->text).

It takes about a minute on two CPU cores. Chance on 1,000 clips is
R@1 0.1%, R@10 1% and median rank ~500; the numbers show that the pipeline
learns, not how the model does on real videos.
"""

import json
import os

from absl import flags

from vidcore import cli, demo_steps

FLAGS = flags.FlagValues()  # own flags: see vidcore.cli.attach_flag_values
WORD_VECTORS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "data", "demo_word_vectors.bin"
)


flags.DEFINE_string(
    "workdir",
    "demo_out/howto",
    "Where data, models and results go.",
    flag_values=FLAGS,
)
flags.DEFINE_integer("epochs", 6, "Training epochs.", flag_values=FLAGS)
flags.DEFINE_bool("quick", False, "Tiny run for tests.", flag_values=FLAGS)


def main(argv):
    del argv
    work = FLAGS.workdir
    release = os.path.join(work, "release")
    shards = os.path.join(work, "shards")
    ckpt = os.path.join(work, "model")
    log = os.path.join(work, "demo.log")
    os.makedirs(work, exist_ok=True)
    print(
        "HowTo100M text-video embedding demo: REAL captions (YouCook2, "
        "MSR-VTT), SYNTHETIC clip features"
    )
    demo_steps.run_step(
        [
            "-m",
            "tfrecord_tools.howto_demo_data",
            f"--output_dir={release}",
            "--dims=64,64",
        ],
        log,
    )
    demo_steps.run_step(
        [
            "-m",
            "tfrecord_tools.howto_writer",
            f"--csv={os.path.join(release, 'videos.csv')}",
            f"--caption_path={os.path.join(release, 'captions.json')}",
            f"--features_path={os.path.join(release, 'features_2d')}",
            f"--features_path_3D={os.path.join(release, 'features_3d')}",
            "--feature_dim_2d=64",
            "--feature_dim_3d=64",
            f"--output_dir={shards}",
            "--num_shards=4",
            "--num_workers=2",
        ],
        log,
    )
    demo_steps.run_step(
        [
            "-m",
            "tfrecord_tools.howto_eval_sets",
            "--dataset=msrvtt",
            f"--captions={os.path.join(release, 'msrvtt_test.csv')}",
            f"--features={os.path.join(release, 'msrvtt_test_features.npz')}",
            "--feature_dim_2d=64",
            "--feature_dim_3d=64",
            f"--output_dir={shards}",
        ],
        log,
    )
    test = os.path.join(shards, "msrvtt_test-*")
    epochs = 1 if FLAGS.quick else FLAGS.epochs
    demo_steps.run_step(
        [
            "-m",
            "howto.train",
            f"--train_data={os.path.join(shards, 'train-*')}",
            f"--word2vec_path={WORD_VECTORS}",
            "--we_dim=10",
            "--feature_dim=128",
            "--embd_dim=256",
            "--batch_size=16",
            "--n_pair=8",
            f"--epochs={epochs}",
            "--lr=0.001",
            "--lr_decay=0.9",
            "--eval_msrvtt=1",
            f"--msrvtt_test_path={test}",
            "--batch_size_val=500",
            f"--checkpoint_dir={ckpt}",
        ],
        log,
    )
    demo_steps.run_step(
        [
            "-m",
            "howto.eval",
            "--eval_msrvtt=1",
            f"--msrvtt_test_path={test}",
            f"--checkpoint_dir={ckpt}",
            "--video_to_text",
        ],
        log,
    )
    with open(os.path.join(ckpt, "retrieval.json")) as f:
        results = json.load(f)["results"]
    t2v = results["MSR-VTT text->video"]
    print(
        f"\nMSR-VTT 1k-A captions, synthetic features, text->video: "
        f"R@1 {t2v['R@1']:.1f}%, R@10 {t2v['R@10']:.1f}%, median rank "
        f"{t2v['MedR']:g} (chance: R@1 0.1%, R@10 1.0%, median rank "
        f"~500)\nModel: {ckpt}\nLog: {log}"
    )
    print(demo_steps.tensorboard_hint(ckpt))


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
