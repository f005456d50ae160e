"""Kinetics-style demo on REAL clips: convert, train, evaluate.

``python -m kinetics.demo --workdir=demo_out/kinetics`` runs, as separate
commands that it prints so they can be copied:

1. cut the four real clips shipped in kinetics/data/clips (one per class
   folder: playing cricket, yawning, riding a bike, answering questions;
   see its README.txt for sources and licences) into 1-second segments:
   those in the first 60% of each clip for training, the rest for
   validation, written as path,label,start,end CSVs;
2. convert both CSVs with tfrecord_tools.video_writer (PyAV decoding, 15
   fps, short side 64, JPEG frames; 2 worker processes for training);
3. train R(2+1)D-18 from scratch with the recipe's optimisation (SGD,
   warm-up, step decay) on 8-frame 56x56 clips, evaluating every epoch;
4. evaluate clip and video accuracy (top-1) with 3 clips per video.

Chance is 25% (4 classes). The clips are real, but four videos are far
too few to say anything about Kinetics accuracy: the demo shows that the
whole pipeline runs and learns. It takes a few minutes on two CPU cores.
"""

import json
import os

from absl import flags

from vidcore import cli, demo_steps
from vidcore.errors import UserInputError

CLIPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                     "clips")
SEGMENT_SECONDS = 1.0
STRIDE_SECONDS = 0.25
TRAIN_SHARE = 0.6

FLAGS = flags.FlagValues()  # own flags: see vidcore.cli.attach_flag_values
flags.DEFINE_string("workdir", "demo_out/kinetics",
                    "Where data, models and results go.", flag_values=FLAGS)
flags.DEFINE_integer("epochs", 12, "Training epochs.", flag_values=FLAGS)
flags.DEFINE_bool("quick", False, "Tiny run for tests.", flag_values=FLAGS)


def clip_durations():
    """{(class, path): duration in seconds} of the shipped clips."""
    try:
        import av  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise UserInputError("the Kinetics demo decodes videos with PyAV: "
                             "pip install 'vidmodels[video]'") from None
    found = {}
    for label in sorted(os.listdir(CLIPS)):
        folder = os.path.join(CLIPS, label)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            with av.open(path) as container:
                stream = container.streams.video[0]
                seconds = float(stream.duration * stream.time_base) \
                    if stream.duration else container.duration / 1e6
            found[(label, path)] = seconds
    return found


def write_segment_csvs(work):
    """train.csv / val.csv of segments and label_map.txt; returns paths."""
    durations = clip_durations()
    rows = {"train": [], "val": []}
    for (label, path), seconds in durations.items():
        split_at = TRAIN_SHARE * seconds
        start = 0.0
        while start + SEGMENT_SECONDS <= split_at + 1e-9:
            rows["train"].append((path, label, start,
                                  start + SEGMENT_SECONDS))
            start += STRIDE_SECONDS
        start = split_at
        while start + SEGMENT_SECONDS <= seconds + 1e-9:
            rows["val"].append((path, label, start, start + SEGMENT_SECONDS))
            start += STRIDE_SECONDS
    out = {}
    for split, split_rows in rows.items():
        out[split] = os.path.join(work, f"{split}.csv")
        with open(out[split], "w") as f:
            f.write("path,label,start,end\n")
            for path, label, start, end in split_rows:
                f.write(f"{path},{label},{start:.3f},{end:.3f}\n")
    out["label_map"] = os.path.join(work, "label_map.txt")
    with open(out["label_map"], "w") as f:
        f.write("\n".join(sorted({label for label, _ in durations})) + "\n")
    return out, {k: len(v) for k, v in rows.items()}


def main(argv):
    del argv
    work = FLAGS.workdir
    data = os.path.join(work, "data")
    run_dir = os.path.join(work, "model")
    log = os.path.join(work, "demo.log")
    os.makedirs(work, exist_ok=True)
    print("Kinetics-style video classification demo on 4 REAL clips "
          "(kinetics/data/clips)")
    csvs, counts = write_segment_csvs(work)
    print(f"  segments: {counts['train']} training, {counts['val']} "
          f"validation ({csvs['train']}, {csvs['val']})")
    for split, workers in (("train", 2), ("val", 1)):
        demo_steps.run_step(
            ["-m", "tfrecord_tools.video_writer", f"--csv={csvs[split]}",
             f"--label_map={csvs['label_map']}", "--fps=15",
             "--short_side=40", f"--output_dir={os.path.join(data, split)}",
             f"--prefix={split}", "--num_shards=2",
             f"--num_workers={workers}"],
            log)
    epochs = 1 if FLAGS.quick else FLAGS.epochs
    demo_steps.run_step(
        ["-m", "kinetics.train", f"--data_path={data}",
         "--model=r2plus1d_18", "--clip_len=8", "--resize=40,53",
         "--crop_size=32", "--clips_per_video=4", "--batch_size=8",
         f"--epochs={epochs}", "--lr=0.02", "--lr_warmup_epochs=1",
         f"--lr_milestones={max(epochs - 3, 1)}", "--print_freq=10",
         f"--output_dir={run_dir}"],
        log)
    demo_steps.run_step(
        ["-m", "kinetics.eval", f"--data_path={data}",
         f"--output_dir={run_dir}", "--clips_per_video=3",
         "--batch_size=8", f"--predictions_csv={work}/predictions.csv"],
        log)
    with open(os.path.join(run_dir, "eval.json")) as f:
        results = json.load(f)["results"]
    print(f"\nValidation segments of the 4 real clips: clip accuracy "
          f"{results['clip_acc@1']:.1f}%, video accuracy "
          f"{results['video_acc@1']:.1f}% (chance 25%)\nModel: {run_dir}\n"
          f"Predictions: {work}/predictions.csv\nLog: {log}")
    print(demo_steps.tensorboard_hint(run_dir))


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
