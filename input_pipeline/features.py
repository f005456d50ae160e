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


# --------------------------------------------------------------------------- #
# HowTo100M text-video embedding (our TFRecord layout of the released files).
#
# Training videos: one `tf.train.SequenceExample` per video.
#   context:
#     HOWTO_VIDEO_ID        bytes   YouTube id
#     HOWTO_CAPTION_START   float   [n_captions] seconds
#     HOWTO_CAPTION_END     float   [n_captions] seconds
#     HOWTO_CAPTION_TEXT    bytes   [n_captions] utf-8 caption text
#     howto_rate_key(s)     float   frames per second of stream s
#     howto_dim_key(s)      int64   feature size of stream s
#   feature lists:
#     howto_frames_key(s)   one bytes feature per frame: the frame's feature
#                           vector as little-endian float16 (the release's
#                           own precision; each frame already L2-normalised)
#
# Evaluation / fine-tuning clips: one `tf.train.Example` per clip.
#     HOWTO_CLIP_ID         bytes   clip id (MSR-VTT video id, YouCook2 clip
#                                   id, LSMDC clip name)
#     HOWTO_VIDEO_ID        bytes   parent video id (= clip id where the set
#                                   has no parent videos)
#     HOWTO_CAPTION_TEXT    bytes   [n_captions] (1 for test sets; all the
#                                   sentences of a clip for training sets)
#     howto_pooled_key(s)   float   [dim_s] the clip's pooled stream feature
#                                   (as released: max-pooled, not normalised)
# --------------------------------------------------------------------------- #
HOWTO_STREAMS = ("2d", "3d")
# Frame rates of the released features: ResNet-152 at 1 frame per second,
# ResNeXt-101 3D at one 16-frame window every 16 frames of 24 fps video.
HOWTO_DEFAULT_RATES = {"2d": 1.0, "3d": 24.0 / 16.0}
HOWTO_DEFAULT_DIMS = {"2d": 2048, "3d": 2048}

HOWTO_VIDEO_ID = "video_id"
HOWTO_CLIP_ID = "clip_id"
HOWTO_CAPTION_START = "caption/start"
HOWTO_CAPTION_END = "caption/end"
HOWTO_CAPTION_TEXT = "caption/text"


def howto_frames_key(stream):
    """Feature-list key of a stream's per-frame features, e.g. "feature/2d"."""
    return f"feature/{stream}"


def howto_rate_key(stream):
    """Context key of a stream's frame rate (frames per second)."""
    return f"feature/{stream}/rate"


def howto_dim_key(stream):
    """Context key of a stream's feature size."""
    return f"feature/{stream}/dim"


def howto_pooled_key(stream):
    """Example key of a clip's pooled feature of one stream."""
    return f"feature/{stream}/pooled"


# --------------------------------------------------------------------------- #
# Raw video (Kinetics-style classification): one `tf.train.SequenceExample`
# per video, or per segment of a video for CSV inputs with start/end times.
# Keys are those of DeepMind's DMVR readers and the TF Model Garden video
# dataloaders (MediaSequence naming), so shards interoperate both ways.
#   context:
#     VIDEO_MEDIA_ID          bytes   video id (file stem, or stem plus the
#                                     segment times for CSV segments)
#     VIDEO_DATA_PATH         bytes   the source file as given
#     VIDEO_LABEL_INDEX       int64   [1] class index (absent if unlabelled)
#     VIDEO_LABEL_STRING      bytes   [1] class name (DMVR's key)
#     VIDEO_LABEL_TEXT        bytes   [1] class name again (the key some
#                                     Model Garden readers use)
#     VIDEO_START_TIMESTAMP   int64   segment start, microseconds
#     VIDEO_END_TIMESTAMP     int64   segment end, microseconds
#     VIDEO_FRAME_RATE        float   frames per second of the stored frames
#     VIDEO_HEIGHT, _WIDTH    int64   stored frame size (short side resized)
#     VIDEO_FORMAT            bytes   "JPEG"
#     VIDEO_SOURCE_FRAME_RATE float   the source's own frame rate
#     VIDEO_SOURCE_DURATION   float   the source's duration, seconds
#   feature lists:
#     VIDEO_IMAGE_ENCODED     one bytes feature per frame: the JPEG image
# --------------------------------------------------------------------------- #
VIDEO_IMAGE_ENCODED = "image/encoded"
VIDEO_MEDIA_ID = "clip/media_id"
VIDEO_DATA_PATH = "clip/data_path"
VIDEO_LABEL_INDEX = "clip/label/index"
VIDEO_LABEL_STRING = "clip/label/string"
VIDEO_LABEL_TEXT = "clip/label/text"
VIDEO_START_TIMESTAMP = "clip/start/timestamp"
VIDEO_END_TIMESTAMP = "clip/end/timestamp"
VIDEO_FRAME_RATE = "image/frame_rate"
VIDEO_HEIGHT = "image/height"
VIDEO_WIDTH = "image/width"
VIDEO_FORMAT = "image/format"
VIDEO_SOURCE_FRAME_RATE = "clip/source/frame_rate"
VIDEO_SOURCE_DURATION = "clip/source/duration"

# --------------------------------------------------------------------------- #
# MIL-NCE (end-to-end S3D-G from raw video): the raw-video records above,
# one per video (HowTo100M, MSR-VTT, HMDB-51) or per captioned segment
# (YouCook2), with the video's captions in the context. Frame k of a record
# shows time VIDEO_START_TIMESTAMP / 1e6 + k / VIDEO_FRAME_RATE seconds on
# the source video's timeline; caption times are on that same timeline.
#   context (besides the raw-video keys):
#     VIDEO_CAPTION_STRING    bytes   [n] utf-8 caption text (DMVR's key)
#     VIDEO_CAPTION_START     float   [n] caption start, seconds
#     VIDEO_CAPTION_END       float   [n] caption end, seconds
#     VIDEO_SPLITS            int64   [3] HMDB-51 official splits 1-3:
#                                     0 unused, 1 train, 2 test
# --------------------------------------------------------------------------- #
VIDEO_CAPTION_STRING = "caption/string"
VIDEO_CAPTION_START = "caption/start"
VIDEO_CAPTION_END = "caption/end"
VIDEO_SPLITS = "clip/split"

# MIL-NCE features extracted from videos (howto.extract_features
# --format=tfrecord): one `tf.train.SequenceExample` per video.
#   context:
#     VIDEO_MEDIA_ID               bytes   video id
#     milnce_feature_dim_key(l)    int64   [1] feature size of layer l
#   feature lists (one feature per window, in time order):
#     milnce_feature_key(l)        float   [dim] layer l's features
#     MILNCE_WINDOW_START          float   [1] window start, seconds on the
#                                          video's timeline
MILNCE_WINDOW_START = "window/start_time"


def milnce_feature_key(layer):
    """Feature-list key of an extracted layer, e.g. "feature/mixed_5c"."""
    return f"feature/{layer}"


def milnce_feature_dim_key(layer):
    """Context key of an extracted layer's size."""
    return f"feature/{layer}/dim"

# --------------------------------------------------------------------------- #
# AVLnet audio: the log-mel spectrogram of `vidcore.audio.
# log_mel_spectrogram` (40 bands, 100 frames per second: vidcore.audio.
# NUM_MEL_BINS, FRAMES_PER_SECOND), added to the context of the HowTo100M
# video records above (one per video, whole-video spectrogram) and of the
# evaluation / fine-tuning clip Examples (the clip's spectrogram, possibly
# zero-padded to a fixed length as the released pickles are).
#     AVL_SPECTROGRAM          bytes   [1] the [40, T] spectrogram as
#                                      little-endian float16, TIME-MAJOR
#                                      (frame after frame, 80 bytes each),
#                                      so a window of frames is one byte
#                                      range: vidcore.audio.
#                                      encode_spectrogram / decode_spectrogram
#     AVL_SPECTROGRAM_FRAMES   int64   [1] valid frames (T, or fewer when the
#                                      stored array is zero-padded)
#     AVL_SPECTROGRAM_BINS     int64   [1] bands per frame (40)
#     AVL_SPECTROGRAM_RATE     float   [1] frames per second (100)
#     AVL_AUDIO_SOURCE_RATE    int64   [1] the source audio's sample rate
#                                      (16000 unless it was resampled)
# --------------------------------------------------------------------------- #
AVL_SPECTROGRAM = "audio/spectrogram"
AVL_SPECTROGRAM_FRAMES = "audio/spectrogram/num_frames"
AVL_SPECTROGRAM_BINS = "audio/spectrogram/num_bins"
AVL_SPECTROGRAM_RATE = "audio/spectrogram/rate"
AVL_AUDIO_SOURCE_RATE = "audio/source/sample_rate"
