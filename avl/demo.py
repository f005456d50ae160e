"""AVLnet demo: REAL speech, SYNTHETIC visual features, the whole workflow.

``python -m avl.demo --workdir=demo_out/avl`` runs, as separate commands
that it prints so they can be copied:

1. write release-layout files (tfrecord_tools.avl_demo_data): "videos"
   whose sound is REAL LibriVox speech (three recordings of "Sense and
   Sensibility", cut into one-second pieces and drawn again and again, at
   random gains) as 16 kHz wav files, and whose 2D/3D features are
   SYNTHETIC (each speech piece has its own random "scene", shown while it
   plays); test clips cut from held-out videos as a release-style pickle;
2. convert the videos (features + wav -> log-mel spectrograms in the
   records, tfrecord_tools.howto_writer --features_path_audio) and the test
   pickle (tfrecord_tools.howto_eval_sets --allow_pickle);
3. train AVLnet (the full ResDAVEnet audio branch, a small embedding D)
   with n_pair random 2-second windows per video and the masked margin
   softmax loss, printing audio -> video retrieval before training and
   after every epoch;
4. evaluate the final model with avl.eval.

It takes about two minutes on two CPU cores. Chance on the 48 test
clips is R@1 2.1%, R@10 20.8% and a median rank of 24.5; the numbers show
that the pipeline learns, not how AVLnet does on real videos.
"""

import json
import os

from absl import flags

from vidcore import cli, demo_steps

FLAGS = flags.FlagValues()  # own flags: see vidcore.cli.attach_flag_values
flags.DEFINE_string("workdir", "demo_out/avl", "Where data, models and "
                    "results go.", flag_values=FLAGS)
flags.DEFINE_integer("epochs", 6, "Training epochs.", flag_values=FLAGS)
flags.DEFINE_bool("quick", False, "Tiny run for tests.", flag_values=FLAGS)

TEST_CLIPS = 48  # 24 held-out videos x 2 clips (avl_demo_data defaults)


def chance(num_clips):
    """(R@1 %, R@10 %, median rank) of random retrieval among num_clips."""
    return (100.0 / num_clips, 100.0 * min(10, num_clips) / num_clips,
            (num_clips + 1) / 2)


def main(argv):
    del argv
    work = FLAGS.workdir
    release = os.path.join(work, "release")
    shards = os.path.join(work, "shards")
    ckpt = os.path.join(work, "model")
    log = os.path.join(work, "demo.log")
    os.makedirs(work, exist_ok=True)
    print("AVLnet audio-video demo: REAL LibriVox speech, SYNTHETIC visual "
          "features")
    videos = 32 if FLAGS.quick else 128
    demo_steps.run_step(
        ["-m", "tfrecord_tools.avl_demo_data", f"--output_dir={release}",
         f"--num_videos={videos}", "--dims=64,64"], log)
    demo_steps.run_step(
        ["-m", "tfrecord_tools.howto_writer",
         f"--csv={os.path.join(release, 'videos.csv')}",
         f"--caption_path={os.path.join(release, 'captions.json')}",
         f"--features_path={os.path.join(release, 'features_2d')}",
         f"--features_path_3D={os.path.join(release, 'features_3d')}",
         f"--features_path_audio={os.path.join(release, 'audio')}",
         "--feature_dim_2d=64", "--feature_dim_3d=64",
         f"--output_dir={shards}", "--num_shards=2"], log)
    demo_steps.run_step(
        ["-m", "tfrecord_tools.howto_eval_sets", "--dataset=youcook",
         "--allow_pickle",
         f"--captions={os.path.join(release, 'test_clips.pkl')}",
         "--feature_dim_2d=64", "--feature_dim_3d=64",
         f"--output_dir={shards}"], log)
    test = os.path.join(shards, "youcook_val-*")
    # 2-s windows (200 frames) in training; test clips padded to 1024.
    eval_flags = ["--eval_youcook=1", f"--youcook_val_path={test}",
                  "--youcook_num_frames_multiplier=1",
                  f"--batch_size_val={TEST_CLIPS}"]
    demo_steps.run_step(
        ["-m", "avl.train", f"--train_data={os.path.join(shards, 'train-*')}",
         "--feature_dim=128", "--embd_dim=256", "--batch_size=16",
         "--n_pair=4", "--howto_audio_frames=200",
         f"--epochs={1 if FLAGS.quick else FLAGS.epochs}", "--lr=0.001",
         "--lr_decay=0.9", *eval_flags, f"--checkpoint_dir={ckpt}"], log)
    demo_steps.run_step(["-m", "avl.eval", *eval_flags,
                         f"--checkpoint_dir={ckpt}"], log)
    with open(os.path.join(ckpt, "retrieval.json"), encoding="utf-8") as f:
        results = json.load(f)["results"]
    a2v = results["YouCook2 audio->video"]
    r1, r10, medr = chance(a2v["num_queries"])
    print(f"\nAudio -> video on {a2v['num_queries']} held-out clips (real "
          f"speech, synthetic visual features): R@1 {a2v['R@1']:.1f}%, "
          f"R@10 {a2v['R@10']:.1f}%, median rank {a2v['MedR']:g} (chance: "
          f"R@1 {r1:.1f}%, R@10 {r10:.1f}%, median rank {medr:g})\n"
          f"Model: {ckpt}\nLog: {log}")
    print(demo_steps.tensorboard_hint(ckpt))


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
