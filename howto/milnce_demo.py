"""MIL-NCE demo: REAL videos, OUR captions, the whole workflow from raw video.

``python -m howto.milnce_demo --workdir=demo_out/milnce`` runs, as separate
commands that it prints so they can be copied:

1. lay out four real short videos (howto/data/milnce_demo: a UCF101 cricket
   clip, Big Buck Bunny, a street with bikes, the "carphone" sequence) as a
   user's HowTo100M download: the video folder, the video list CSV and one
   caption file per video (start,end,text). The captions were written by
   us for this demo (README.txt there), not taken from any dataset;
2. train S3D-G + the text branch with MIL-NCE straight from the raw video
   folder (``howto.milnce_train`` converts it once into TFRecords), with
   ``--evaluate`` (the held-out retrieval below after the epoch): 8-frame
   clips at 5 fps, 56 x 56 crops, 2 candidate captions per clip, the demo's
   10-d word vectors, batch 4, 300 steps at lr 1e-4, on the CPU;
3. zero-shot retrieval (``howto.eval_youcook``, as for YouCook2) of
   held-out segments of the videos, which no training clip covered, by
   held-out captions (the segments were converted on first use by step 2,
   and are reused).

It takes a few minutes on two CPU cores. With 4 clips, chance is R@1 25%
and median rank 2.5; the numbers show that the pipeline learns from pixels
and words, not how MIL-NCE does on HowTo100M (README: MIL-NCE results).
"""

import csv
import json
import os
import shutil

from absl import flags

from vidcore import cli, demo_steps

FLAGS = flags.FlagValues()  # own flags: see vidcore.cli.attach_flag_values
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
CLIPS = os.path.join(DATA, "milnce_demo")
WORD_VECTORS = os.path.join(DATA, "demo_word_vectors.bin")

flags.DEFINE_string("workdir", "demo_out/milnce",
                    "Where data, models and results go.", flag_values=FLAGS)
flags.DEFINE_integer("steps", 300, "Training steps.", flag_values=FLAGS)
flags.DEFINE_bool("quick", False, "Tiny run for tests.", flag_values=FLAGS)

# Clip settings shared by training and evaluation.
CLIP_FLAGS = ["--num_frames=8", "--fps=5", "--video_size=56"]


def write_user_layout(work):
    """Videos, video list and caption files as a user would have them;
    returns (video folder, train CSV, caption folder, evaluation CSV)."""
    videos = os.path.join(work, "videos")
    captions = os.path.join(work, "captions")
    os.makedirs(videos, exist_ok=True)
    os.makedirs(captions, exist_ok=True)
    with open(os.path.join(CLIPS, "captions.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    ids = sorted({r["video_id"] for r in rows})
    for video_id in ids:
        shutil.copyfile(os.path.join(CLIPS, f"{video_id}.mp4"),
                        os.path.join(videos, f"{video_id}.mp4"))
        with open(os.path.join(captions, f"{video_id}.csv"), "w",
                  newline="") as f:
            out = csv.writer(f)
            out.writerow(["start", "end", "text"])
            out.writerows([r["start"], r["end"], r["text"]] for r in rows
                          if r["video_id"] == video_id
                          and r["split"] == "train")
    train_csv = os.path.join(work, "train.csv")
    with open(train_csv, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["video_path"])
        out.writerows([f"{video_id}.mp4"] for video_id in ids)
    eval_csv = os.path.join(work, "eval_segments.csv")
    with open(eval_csv, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["end", "start", "task", "text", "video_id"])
        out.writerows([r["end"], r["start"], "demo", r["text"],
                       r["video_id"]] for r in rows if r["split"] == "eval")
    return videos, train_csv, captions, eval_csv


def main(argv):
    del argv
    work = FLAGS.workdir
    os.makedirs(work, exist_ok=True)
    log = os.path.join(work, "demo.log")
    print("MIL-NCE demo: REAL videos (4 short clips), captions written for "
          "the demo, S3D-G trained from pixels on the CPU")
    videos, train_csv, captions, eval_csv = write_user_layout(work)
    print(f"   videos in {videos}, captions in {captions}")
    steps = 4 if FLAGS.quick else FLAGS.steps
    eval_records = os.path.join(work, "eval_records")
    evaluation = [f"--eval_video_root={videos}", f"--eval_csv={eval_csv}",
                  f"--records_cache={eval_records}", "--num_windows_test=2"]
    demo_steps.run_step(
        ["-m", "howto.milnce_train", f"--video_path={videos}",
         f"--train_csv={train_csv}", f"--caption_root={captions}",
         f"--records_dir={os.path.join(work, 'records')}",
         "--short_side=64", *CLIP_FLAGS, "--min_time=1.6",
         "--num_candidates=2", f"--word2vec_path={WORD_VECTORS}",
         "--batch_size=4", "--lr=0.0001", f"--warmup_steps={steps // 10}",
         f"--steps_per_epoch={steps}", "--epochs=1", "--n_display=10",
         "--num_thread_reader=0", f"--checkpoint_root={work}",
         "--checkpoint_dir=model", "--checkpoint_every_steps=1000",
         "--evaluate", "--batch_size_val=4", *evaluation],
        log)
    model = os.path.join(work, "model")
    results_file = os.path.join(work, "retrieval.json")
    demo_steps.run_step(
        ["-m", "howto.eval_youcook", *evaluation,
         f"--pretrain_cnn_path={model}", *CLIP_FLAGS, "--batch_size=4",
         "--short_side=64", f"--output_json={results_file}"],
        log)
    with open(results_file) as f:
        results = json.load(f)
    row = results["results"]["YouCook2 text->video"]
    print(f"\nHeld-out segments of the 4 videos, held-out captions, "
          f"text->video: R@1 {row['R@1']:.1f}%, R@5 {row['R@5']:.1f}%, "
          f"median rank {row['MedR']:g} (chance: R@1 25%, median rank "
          f"2.5)\nModel: {model}\nLog: {log}")
    print(demo_steps.tensorboard_hint(model))


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
