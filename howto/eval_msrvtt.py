"""Zero-shot MSR-VTT retrieval of MIL-NCE: ``python -m howto.eval_msrvtt``.

The original's command runs with only the paths changed::

  python -m howto.eval_msrvtt --batch_size=16 --num_thread_reader=20 \\
      --num_windows_test=10 --eval_video_root=path_to_msrvtt_videos \\
      --pretrain_cnn_path=s3d_howto100m.pth --token_to_word_path=s3d_dict.npy

Each of the 1,000 MSR-VTT 1k-A test videos (the packaged
``howto/data/msrvtt_test.csv``, or ``--eval_csv``) is embedded as the mean
of the ``video_embedding`` of ``--num_windows_test`` windows of
``--num_frames`` frames at ``--fps`` spread over the whole video (centre
square crop resized to ``--video_size``), its sentence by the text module
(``--max_words_test`` words); every sentence ranks every video by the dot
product. Prints R@1, R@5, R@10 (percent of queries) and the median rank
(1-based) and writes them to ``--output_json``.

``--eval_video_root`` is the folder of raw videos (``<video_id>.mp4``),
converted on first use into ``--records_cache`` (default
``<eval_video_root>/vidmodels_records/msrvtt``, or
``./vidmodels_records/msrvtt`` when the video folder is not writable) and
reused by later runs, or the shards of ``python -m
tfrecord_tools.milnce_writer --dataset=msrvtt`` (a glob or their folder).
``--pretrain_cnn_path`` takes the released ``.pth``, an original training
checkpoint, a ``howto.convert_milnce`` folder or one of our run folders.
"""

from howto import milnce_eval_cli
from vidcore import cli

FLAGS = milnce_eval_cli.FLAGS


def main(argv):
    del argv
    return milnce_eval_cli.retrieval_main("msrvtt")


def run():
    cli.run(main, FLAGS)


if __name__ == "__main__":
    run()
