"""pip-installable package: `pip install -e '.[cpu]'` (or `.[gpu]` on a CUDA machine)."""
from setuptools import find_packages, setup

TF_RANGE = ">=2.20,<2.22"

setup(
    name="vidmodels",
    version="0.1.0",
    description=(
        "TensorFlow 2 / Keras 3 video understanding: YouTube-8M winners, "
        "HowTo100M / MIL-NCE, AVLnet and Kinetics classifiers."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(
        include=["vidcore", "vidcore.*", "input_pipeline", "input_pipeline.*",
                 "tfrecord_tools", "tfrecord_tools.*", "yt8m", "yt8m.*",
                 "howto", "howto.*", "avl", "avl.*", "kinetics",
                 "kinetics.*"]),
    include_package_data=True,
    package_data={"yt8m": ["data/*.csv"], "howto": ["data/*", "data/milnce_demo/*"],
                  "avl": ["data/librivox/*"],
                  "kinetics": ["data/clips/*", "data/clips/*/*"]},
    # TensorFlow itself comes from an extra: the CPU wheel and the CUDA wheel
    # both provide the `tensorflow` module and must not be installed together.
    install_requires=[
        "keras>=3.10,<4",
        "numpy>=1.26",
        "pandas>=2.1",
        "absl-py>=2.1",
        "tensorboard>=2.20",
        "tqdm>=4.66",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu{TF_RANGE}"],
        "gpu": [f"tensorflow[and-cuda]{TF_RANGE}"],
        # The HMDB-51 linear probe of MIL-NCE (howto.eval_hmdb): LinearSVC.
        "probe": ["scikit-learn>=1.3"],
        # librosa: the reference of the AVLnet log-mel parity tests only
        # (vidcore.audio computes the spectrograms with TensorFlow ops).
        # pytest-xdist: the README's test command runs on 2 processes.
        # pytest below 9: xdist 3.8's --dist loadgroup renames node ids
        # through an attribute that pytest 9 no longer reads, so its groups
        # are ignored there (tests/conftest.py: the memory-heavy group).
        "test": ["pytest>=8,<9", "pytest-xdist>=3.5", "scikit-learn>=1.3",
                 "librosa>=0.10"],
        # Conversion at scale (tfrecord_tools.conversion --runner=beam).
        # Plain apache-beam: shards are written with tf.io, so Beam's
        # [tfrecord] extra (crcmod only) is not needed, and its [dataframe]
        # extra pins pandas<2.4. 2.69 is the first release that accepts
        # protobuf 6 (TensorFlow 2.21 needs protobuf>=6.31.1).
        "beam": ["apache-beam>=2.69,<3"],
        # Video decoding for tfrecord_tools.video_writer: PyAV bundles its
        # own FFmpeg libraries.
        "video": ["av>=12"],
        # Reading PyTorch checkpoints (howto.convert_torch,
        # kinetics.convert_torchvision) and the torchvision parity tests.
        # On x86_64 Linux with Python 3.11 the pair that imports together
        # is torch 2.14.1 + torchvision 0.29.1 (a CUDA build, ~5.5 GB).
        "torch": ["torch>=2.1", "torchvision>=0.16"],
    },
    entry_points={
        "console_scripts": [
            "yt8m-train=yt8m.train:run",
            "yt8m-eval=yt8m.eval:run",
            "yt8m-inference=yt8m.inference:run",
            "yt8m-ensemble=yt8m.ensemble:run",
            "yt8m-export=yt8m.export:run",
            "yt8m-demo=yt8m.demo:run",
            "yt8m-write-tfrecords=tfrecord_tools.yt8m_writer:run",
            "yt8m-write-demo-data=tfrecord_tools.demo_data:run",
            "tfrecord-inspect=tfrecord_tools.inspect:run",
            "howto-train=howto.train:run",
            "howto-eval=howto.eval:run",
            "howto-convert-torch=howto.convert_torch:run",
            "avl-convert-torch=avl.convert_torch:run",
            "avl-train=avl.train:run",
            "avl-eval=avl.eval:run",
            "avl-demo=avl.demo:run",
            "avl-write-demo-data=tfrecord_tools.avl_demo_data:run",
            "milnce-convert=howto.convert_milnce:run",
            "howto-demo=howto.demo:run",
            "howto-write-tfrecords=tfrecord_tools.howto_writer:run",
            "howto-write-eval-sets=tfrecord_tools.howto_eval_sets:run",
            "kinetics-train=kinetics.train:run",
            "kinetics-eval=kinetics.eval:run",
            "kinetics-convert-torchvision=kinetics.convert_torchvision:run",
            "kinetics-demo=kinetics.demo:run",
            "video-write-tfrecords=tfrecord_tools.video_writer:run",
            "avl-audio-spectrograms=tfrecord_tools.audio_spectrograms:run",
            "milnce-write-tfrecords=tfrecord_tools.milnce_writer:run",
            "milnce-eval-msrvtt=howto.eval_msrvtt:run",
            "milnce-eval-youcook=howto.eval_youcook:run",
            "milnce-eval-hmdb=howto.eval_hmdb:run",
            "milnce-extract-features=howto.extract_features:run",
        ]
    },
)
