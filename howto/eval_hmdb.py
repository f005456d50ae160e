"""HMDB-51 linear probe of MIL-NCE features: ``python -m howto.eval_hmdb``.

The original's command runs with only the paths changed::

  python -m howto.eval_hmdb --batch_size=16 --num_thread_reader=20 \\
      --num_windows_test=10 --eval_video_root=path_to_hmdb51_videos \\
      --pretrain_cnn_path=s3d_howto100m.pth

Each HMDB-51 video (the packaged ``howto/data/hmdb51.csv``, or
``--eval_csv``) gives ``--num_windows_test`` windows of ``--num_frames``
consecutive decoded frames (native frame rate, starts evenly spaced over
the video), centre square crop resized to ``--video_size``, and their
``mixed_5c`` features (1024-d). For each of the three official splits a
linear SVM (scikit-learn ``LinearSVC``, ``--svm_c`` = 100) is trained on the
training videos' windows; a test video's class is the argmax of its
windows' summed decision values. Prints top-1 accuracy per split and their
mean, and writes them to ``--output_json``. Needs scikit-learn:
``pip install 'vidmodels[probe]'``.

``--eval_video_root`` is the folder of raw videos
(``<class>/<video_id>``), converted on first use into ``--records_cache``
(default ``<eval_video_root>/vidmodels_records/hmdb``, or
``./vidmodels_records/hmdb`` when the video folder is not writable) and
reused by later runs, or the shards of ``python -m
tfrecord_tools.milnce_writer --dataset=hmdb`` (a glob or their folder).
``--pretrain_cnn_path`` takes the released ``.pth``, an original training
checkpoint, a ``howto.convert_milnce`` folder or one of our run folders.
"""

from absl import flags

from howto import milnce_eval, milnce_eval_cli
from howto import milnce_flags as mflags
from vidcore import cli

FLAGS = milnce_eval_cli.FLAGS
cli.flag_topic("evaluation output", FLAGS)
flags.DEFINE_float("svm_c", 100.0, "C of the linear SVM (100 as the "
                   "original).", lower_bound=0.0, flag_values=FLAGS)


def main(argv):
    del argv
    mflags.log_torch_only_flags()
    milnce_eval.linear_svc_class()  # no scikit-learn: say so before any work
    files = milnce_eval_cli.eval_files("hmdb")
    strategy = milnce_eval_cli.make_strategy()
    model, _, loaded = milnce_eval_cli.load_model(strategy)
    features, labels, splits = milnce_eval.hmdb_features(
        model, files, milnce_eval_cli.eval_clip_config(), FLAGS.batch_size,
        strategy, progress=bool(FLAGS.verbose),
        options=milnce_eval_cli.reader_options())
    results = milnce_eval.linear_probe(features, labels, splits,
                                       C=FLAGS.svm_c)
    print(milnce_eval.format_probe_table(results))
    milnce_eval_cli.write_results(FLAGS.output_json, results,
                                  weights=str(loaded),
                                  accuracy_unit="fraction")
    return results


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
