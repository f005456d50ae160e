"""AVLnet training pairs/s of the three published models at their sizes.

ResDAVEnet + gated units, cross-replica masked margin softmax, Adam.

Times the project's own training step (``vidcore.training.Trainer``'s step
function, built as ``avl.train`` builds it: ``avl.models.build_model``, the
per-video loss ``avl.train.mms_loss_fn`` = the sum of
``vidcore.losses.cross_replica_mms`` over ``avl.models.loss_pairs(cfg)``
averaged over each video's clips, gradients, Adam with ``avl.train``'s
exponentially decaying learning rate) for the three published models, each
configured by its preset in configs/avl/ (the release's HowTo100M training
commands):

* avlnet: AVLnet, D 4096, 1000 audio frames, MMS(A, V);
* text_tri: AVLnet-Text-Tri, D 6144, 800 frames, text of 20 words x 300,
  MMS(A, V) + MMS(A, T) + MMS(T, V);
* text_fused: AVLnet-Text-Fused, D 4096, 1000 frames, text of 20 x 300,
  MMS(A + T fused, V).

Batches are SYNTHETIC and in memory: 2D+3D video features uniform in
[0, 1], log-mel spectrograms and word vectors standard normal (the values
do not change the work), every frame valid. The reader is excluded; it has
its own benchmark, bench/bench_avl_reader.py. A step takes ``--pairs``
(audio, video) pairs: videos x n_pair, n_pair the published 32 where
``--pairs`` allows (gcd), which only sets the loss's per-video mean. The
published steps are far larger (videos x n_pair = 4,096 / 8,192 / 2,048
pairs; the output says which) and ran in mixed_float16 (apex O1) on V100s;
here float32, as a CPU trains.

Each model runs in a fresh Python process of its own (this script with
``--one_model``), so its peak resident memory ("max RSS") is its own and
nothing of the model before it stays. In it, one warm-up step (tracing) and
then ``--rounds`` rounds of ``--steps`` steps in one call each; pairs/s is
the best round's. Model FLOPs per pair are the forward pass counted by
TensorFlow's graph profiler, x3 for a training step (bench/_flops.py); the
MMS similarity matmuls are not counted (they grow with the batch: 4 N D
FLOPs per pair and loss pair forward, printed below the table). The model
FLOP/s are given as a fraction of the dense float32 matmul FLOP/s measured
in the same run (2048^3, best of 10, by the parent process before and
after the models; the larger is used).

    python bench/bench_avl_training.py [--models avlnet,text_tri,text_fused]
        [--pairs 16 --steps 1 --rounds 3] [--audio_frames N (0: published)]
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench._flops import (TRAIN_TO_FORWARD, forward_flops_per_example,  # noqa: E402
                          matmul_peak)

# Model name (AVLConfig.variant) -> its published HowTo100M preset.
PRESETS = {
    "avlnet": "avlnet_howto100m.flags",
    "text_tri": "avlnet_text_tri_howto100m.flags",
    "text_fused": "avlnet_text_fused_howto100m.flags",
}
TITLES = {"avlnet": "AVLnet", "text_tri": "AVLnet-Text-Tri",
          "text_fused": "AVLnet-Text-Fused"}


def parse_models(text):
    """'avlnet,text_tri' -> ['avlnet', 'text_tri'] (checked names)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in PRESETS:
            raise SystemExit(f"--models: {name!r} is not one of "
                             f"{', '.join(PRESETS)}")
    if not names:
        raise SystemExit("--models: give at least one of "
                         f"{', '.join(PRESETS)}")
    return names


def published_setup(name):
    """The preset's model and training values, read through avl.flags.

    Args:
        name: a key of PRESETS.

    Returns:
        dict: cfg (AVLConfig), audio_frames, n_pair, videos (the global
        --batch_size), lr, lr_decay, precision (the Keras policy of its
        --apex_level).
    """
    from avl import flags as aflags
    path = os.path.join(REPO, "configs", "avl", PRESETS[name])
    aflags.FLAGS.unparse_flags()  # nothing left over from another preset
    aflags.FLAGS(["bench_avl_training", f"--flagfile={path}"])
    f = aflags.FLAGS
    setup = {"cfg": aflags.model_config_from_flags(),
             "audio_frames": f.howto_audio_frames, "n_pair": f.n_pair,
             "videos": f.batch_size, "lr": f.lr, "lr_decay": f.lr_decay,
             "precision": aflags.precision_from_flags()}
    if setup["cfg"].variant != name:
        raise SystemExit(f"{path} configures {setup['cfg'].variant}, not "
                         f"{name}")
    return setup


def synthetic_batch(rng, cfg, pairs, audio_frames):
    """Features of one step's pairs, all frames valid (module doc).

    Args:
        rng: numpy Generator.
        cfg: AVLConfig (feature_dim; text of max_words x we_dim when
            tri_modal).
        pairs: N, the step's (audio, video) pairs.
        audio_frames: T, spectrogram frames per pair.
    """
    import numpy as np

    from avl import models
    from vidcore.backbones.resdavenet import NUM_BANDS
    features = {
        models.VIDEO: rng.random((pairs, cfg.feature_dim),
                                 dtype=np.float32),  # [N, F]
        models.AUDIO: rng.standard_normal(
            (pairs, NUM_BANDS, audio_frames), dtype=np.float32),  # [N, 40, T]
        models.NFRAMES: np.full(pairs, audio_frames, np.int32),  # [N]
    }
    if cfg.tri_modal:
        features[models.TEXT] = rng.standard_normal(
            (pairs, cfg.max_words, cfg.we_dim),
            dtype=np.float32)  # [N, L, we_dim]
    return features


def measure(name, opts):
    """Times one model; returns a dict of the row's values.

    Args:
        name: a key of PRESETS.
        opts: the parsed command line (pairs, n_pair, audio_frames, steps,
            rounds).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from avl.models import build_model, loss_pairs
    from avl.train import mms_loss_fn
    from vidcore import training

    setup = published_setup(name)
    cfg = setup["cfg"]
    audio_frames = opts.audio_frames or setup["audio_frames"]
    n_pair = opts.n_pair or math.gcd(opts.pairs, setup["n_pair"])
    videos = opts.pairs // n_pair
    features = synthetic_batch(np.random.default_rng(0), cfg, opts.pairs,
                               audio_frames)
    labels = np.zeros(videos, np.int32)  # one per video, as the reader's

    def dataset_fn(ctx, seed):
        del ctx, seed
        return tf.data.Dataset.from_tensors((features, labels)).repeat()

    # avl.train's schedule; decay_steps (its epoch length) never reached.
    schedule = keras.optimizers.schedules.ExponentialDecay(
        setup["lr"], decay_steps=10 ** 9, decay_rate=setup["lr_decay"],
        staircase=True)
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)  # the same initial weights every run
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = training.Trainer(
            strategy,
            training.LoopConfig(train_dir=tmp, per_replica_batch_size=videos,
                                max_steps=1, verbose=False,
                                checkpoint_every_steps=10 ** 9),
            build_model=lambda: build_model(cfg),
            build_optimizer=lambda gb: training.make_optimizer(
                "adam", schedule),
            per_example_loss=mms_loss_fn(cfg, n_pair), dataset_fn=dataset_fn)
        iterator = iter(strategy.distribute_datasets_from_function(
            lambda ctx: dataset_fn(ctx, 0)))
        step = trainer._make_train_function()  # the loop's own step
        start = time.perf_counter()
        ran, values, _, _ = step(iterator, tf.constant(1))
        first_loss = float(values[0])
        warmup_s = time.perf_counter() - start
        n = tf.constant(opts.steps)
        for _ in range(opts.rounds):
            start = time.perf_counter()
            ran, values, _, _ = step(iterator, n)
            last_loss = float(values[-1])
            rounds.append((time.perf_counter() - start) / int(ran))
        flops = TRAIN_TO_FORWARD * forward_flops_per_example(
            trainer.model, {k: tf.constant(v) for k, v in features.items()})
        params = training.count_trainable_params(trainer.model)
        del trainer
    keras.backend.clear_session()
    best = min(rounds)
    # Forward MMS matmuls per pair: 2 products of [N, D] x [D, N] per loss
    # pair = 4 N D; x3 for training, as the model's.
    loss_flops = (TRAIN_TO_FORWARD * 4 * opts.pairs * cfg.embd_dim
                  * len(loss_pairs(cfg)))
    published_pairs = setup["videos"] * setup["n_pair"]
    published_loss_flops = loss_flops * published_pairs / opts.pairs
    return {"name": name, "d": cfg.embd_dim, "audio_frames": audio_frames,
            "pairs": opts.pairs, "videos": videos, "n_pair": n_pair,
            "params": params, "published_videos": setup["videos"],
            "published_n_pair": setup["n_pair"],
            "published_precision": setup["precision"],
            "warmup_s": warmup_s, "rounds_s": rounds, "step_s": best,
            "pairs_per_s": opts.pairs / best, "train_flops_per_pair": flops,
            "loss_flops_per_pair": loss_flops,
            "published_pairs": published_pairs,
            "published_loss_flops_per_pair": published_loss_flops,
            "losses": (first_loss, last_loss),
            "max_rss_gb": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def measure_in_child(name, opts):
    """Runs measure(name) in a fresh Python process (this script with
    --one_model), so each model's peak memory is its own and nothing of
    the previous model stays; returns its row.

    Args:
        name: a key of PRESETS.
        opts: the parsed command line, passed on.
    """
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "row.json")
        command = [sys.executable, os.path.abspath(__file__),
                   "--one_model", name, "--result_json", result,
                   "--pairs", str(opts.pairs), "--n_pair", str(opts.n_pair),
                   "--audio_frames", str(opts.audio_frames),
                   "--steps", str(opts.steps), "--rounds", str(opts.rounds)]
        done = subprocess.run(command, check=False)
        if done.returncode:
            raise SystemExit(f"{name}: the measuring process exited with "
                             f"status {done.returncode}")
        with open(result) as f:
            return json.load(f)


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(PRESETS),
                        help=f"comma-separated, of {', '.join(PRESETS)}")
    parser.add_argument("--pairs", type=int, default=16,
                        help="(audio, video) pairs per step")
    parser.add_argument("--n_pair", type=int, default=0,
                        help="clips per video (0: gcd of --pairs and the "
                        "published 32); only the loss's per-video mean")
    parser.add_argument("--audio_frames", type=int, default=0,
                        help="spectrogram frames per pair (0: the published "
                        "1000 / 800 / 1000)")
    parser.add_argument("--steps", type=int, default=1,
                        help="steps per timed round (one call)")
    parser.add_argument("--rounds", type=int, default=3)
    # The measuring process of one model (measure_in_child).
    parser.add_argument("--one_model", help=argparse.SUPPRESS)
    parser.add_argument("--result_json", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    for flag in ("pairs", "steps", "rounds"):
        if getattr(opts, flag) < 1:
            raise SystemExit(f"--{flag} must be positive, got "
                             f"{getattr(opts, flag)}")
    if opts.n_pair < 0 or opts.audio_frames < 0:
        raise SystemExit("--n_pair and --audio_frames must be >= 0 (0: the "
                         "default)")
    if opts.n_pair and opts.pairs % opts.n_pair:
        raise SystemExit(f"--pairs={opts.pairs} is not a multiple of "
                         f"--n_pair={opts.n_pair}")
    return opts


def run_one_model(opts):
    """The child's part: measure one model, print its line, write its row."""
    row = measure(opts.one_model, opts)
    print(f"{TITLES[row['name']]}: {row['params']:,} trainable parameters, "
          f"{row['videos']} videos x {row['n_pair']} pairs; warm-up "
          f"{row['warmup_s']:.1f} s, rounds "
          f"{', '.join(f'{s:.2f}' for s in row['rounds_s'])} s/step, "
          f"loss {row['losses'][0]:.4f} -> {row['losses'][1]:.4f}, "
          f"max RSS {row['max_rss_gb']:.2f} GB", flush=True)
    with open(opts.result_json, "w") as f:
        json.dump(row, f)


def print_table(rows, peaks, start_load, opts):
    """The markdown table and the notes under it."""
    peak = max(peaks)
    print(f"\n# load average {start_load} -> {load_average()}; dense float32"
          f" matmul 2048^3: {peaks[0] / 1e9:.1f} / {peaks[1] / 1e9:.1f} "
          f"GFLOP/s (before / after the models; {peak / 1e9:.1f} used); "
          f"float32; best of {opts.rounds} rounds of {opts.steps} step(s) "
          f"after one warm-up step, each model in its own process; "
          f"synthetic in-memory batches (reader excluded: "
          f"bench/bench_avl_reader.py)\n")
    print("| model | D | audio frames | pairs per step | s/step (best) | "
          "pairs/s | train GFLOP/pair | fraction of matmul peak | "
          "max RSS GB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = r["train_flops_per_pair"] * r["pairs_per_s"]
        print(f"| {TITLES[r['name']]} | {r['d']} | {r['audio_frames']} | "
              f"{r['pairs']} | {r['step_s']:.2f} | {r['pairs_per_s']:.3g} | "
              f"{r['train_flops_per_pair'] / 1e9:.1f} | {rate / peak:.2f} | "
              f"{r['max_rss_gb']:.2f} |")
    print()
    for r in rows:
        print(f"# {TITLES[r['name']]}: published step "
              f"{r['published_videos']} videos x {r['published_n_pair']} = "
              f"{r['published_pairs']:,} pairs ({r['published_precision']}, "
              f"configs/avl/{PRESETS[r['name']]}); MMS similarity matmuls "
              f"(not counted above): {r['loss_flops_per_pair'] / 1e9:.4f} "
              f"train GFLOP/pair at {r['pairs']} pairs, "
              f"{r['published_loss_flops_per_pair'] / 1e9:.2f} at "
              f"{r['published_pairs']:,}")


def main():
    opts = parse_args()
    if opts.one_model:
        return run_one_model(opts)
    names = parse_models(opts.models)

    import tensorflow as tf
    start_load = load_average()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}"
          f" UTC, {platform.machine()}, {os.cpu_count()} CPUs, TensorFlow "
          f"{tf.__version__}, GPUs: "
          f"{len(tf.config.list_physical_devices('GPU'))}, load average "
          f"{start_load}", flush=True)
    peaks = [matmul_peak(n=2048, dtype="float32")]
    rows = [measure_in_child(name, opts) for name in names]
    peaks.append(matmul_peak(n=2048, dtype="float32"))
    print_table(rows, peaks, start_load, opts)


if __name__ == "__main__":
    main()
