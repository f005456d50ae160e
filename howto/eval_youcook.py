"""Zero-shot YouCook2 retrieval of MIL-NCE: ``python -m howto.eval_youcook``.

The original's command runs with only the paths changed::

  python -m howto.eval_youcook --batch_size=16 --num_thread_reader=20 \\
      --num_windows_test=10 --eval_video_root=path_to_youcook_videos \\
      --pretrain_cnn_path=s3d_howto100m.pth --token_to_word_path=s3d_dict.npy

Each of the 3,350 YouCook2 validation captions (the packaged
``howto/data/validation_youcook.csv``, or ``--eval_csv``) is a clip: its
``--num_windows_test`` windows of ``--num_frames`` frames at ``--fps``
start evenly spaced from the caption's start to 0.4 s before the last
window would pass its end (as the original), centre square crop resized to
``--video_size``; the clip's embedding is the mean of the windows'
``video_embedding``. Every caption ranks every clip by the dot product.
Prints R@1, R@5, R@10 (percent of queries) and the median rank (1-based)
and writes them to ``--output_json``.

``--eval_video_root`` is the folder of raw videos (the original's
``validation/<task>/<video_id>.<ext>`` layout, or a flat folder), converted
on first use into ``--records_cache`` (default
``<eval_video_root>/vidmodels_records/youcook``, or
``./vidmodels_records/youcook`` when the video folder is not writable) and
reused by later runs, or the shards of ``python -m
tfrecord_tools.milnce_writer --dataset=youcook`` (a glob or their folder).
``--pretrain_cnn_path`` takes the released ``.pth``, an original training
checkpoint, a ``howto.convert_milnce`` folder or one of our run folders.
"""

from howto import milnce_eval_cli
from vidcore import cli

FLAGS = milnce_eval_cli.FLAGS


def main(argv):
    del argv
    return milnce_eval_cli.retrieval_main("youcook")


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
