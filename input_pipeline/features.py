"""Feature keys and quantisation constants of the official data formats.

This module is the single place that names TFRecord feature keys: the readers
in `input_pipeline` and the writers in `tfrecord_tools` both import it, so a
key can never be spelled two ways.

YouTube-8M (https://research.google.com/youtube8m/download.html):

* video level: `tf.train.Example` with the id, `labels` (int64 list) and one
  float list per feature (`mean_rgb` [1024], `mean_audio` [128]).
* frame level: `tf.train.SequenceExample`; context holds the id and `labels`,
  feature lists `rgb` and `audio` hold one bytes feature per second of video,
  each the uint8-quantised frame feature.
* 2019 segment-rated validate/test shards add the context features
  `segment_labels`, `segment_start_times` and `segment_scores`.
"""

# Video id key: the 2017 release used "video_id", 2018 and later use "id".
YT8M_ID_KEYS = ("id", "video_id")
YT8M_ID_KEY_2017 = "video_id"
YT8M_ID_KEY = "id"
YT8M_LABELS_KEY = "labels"

# Frame-level feature lists and their sizes.
YT8M_RGB = "rgb"
YT8M_AUDIO = "audio"
# Video-level (mean-pooled) features and their sizes.
YT8M_MEAN_RGB = "mean_rgb"
YT8M_MEAN_AUDIO = "mean_audio"
YT8M_FEATURE_SIZES = {
    YT8M_RGB: 1024,
    YT8M_AUDIO: 128,
    YT8M_MEAN_RGB: 1024,
    YT8M_MEAN_AUDIO: 128,
}

# 2019 segment-rated shards.
YT8M_SEGMENT_LABELS = "segment_labels"
YT8M_SEGMENT_START_TIMES = "segment_start_times"
YT8M_SEGMENT_SCORES = "segment_scores"
YT8M_SEGMENT_SIZE = 5  # frames (= seconds) per rated segment

# Class counts of the releases.
YT8M_NUM_CLASSES_2017 = 4716
YT8M_NUM_CLASSES = 3862  # 2018 and later
YT8M_NUM_SEGMENT_CLASSES = 1000  # classes rated in the 2019 segment task

# At most this many frames (seconds) are read per video.
YT8M_MAX_FRAMES = 300

# Quantisation of frame features: q = round((clip(x,-2,2) + 2) * 255 / 4),
# x = q * 4/255 + (4/512 - 2)  (the bias centres each of the 256 bins).
QUANT_MIN = -2.0
QUANT_MAX = 2.0
DEQUANT_SCALE = (QUANT_MAX - QUANT_MIN) / 255.0
DEQUANT_BIAS = (QUANT_MAX - QUANT_MIN) / 512.0 + QUANT_MIN
