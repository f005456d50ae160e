"""Shared pytest setup: two logical CPU devices for multi-device tests."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# torch's CUDA wheel brings triton, whose import segfaults in a process that
# has loaded TensorFlow first (torch.optim probes for it). The CPU tests never
# need it: make `import triton` fail cleanly, which torch handles.
sys.modules.setdefault("triton", None)

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # already initialised by an earlier import
    pass

import shutil  # noqa: E402

import pytest  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Records each phase's report on the item (read by _free_tmp_path)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"_report_{report.when}", report)


@pytest.fixture(autouse=True)
def _free_tmp_path(request):
    """Deletes a passing test's tmp_path as soon as it ends.

    The published-command tests write full-size checkpoints (up to 3.6 GB
    for the largest YouTube-8M model); kept until the session ends (pytest's
    default), they add up to more disk than a CI machine may have. A failing
    test's directory is kept for inspection."""
    yield
    if "tmp_path" not in request.fixturenames:
        return
    report = getattr(request.node, "_report_call", None)
    if report is not None and report.passed:
        shutil.rmtree(request.node.funcargs["tmp_path"],
                      ignore_errors=True)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A small SYNTHETIC dataset in the official frame-level format, written
    by our own writer: train/validate/test shards and a segment-rated shard
    (20 classes)."""
    from tfrecord_tools.demo_data import write_demo_dataset
    out = tmp_path_factory.mktemp("demo_data")
    write_demo_dataset(str(out), num_classes=20, num_train=96,
                       num_validate=37, num_test=21, min_frames=6,
                       max_frames=24, num_shards=(3, 2, 2), seed=0,
                       num_segment_videos=6)
    return str(out)


@pytest.fixture(autouse=True)
def _distinct_collective_keys():
    """Gives every test's MirroredStrategy its own collective key range.

    Several strategies in one process otherwise reuse group/instance keys,
    and TensorFlow's collective executor then matches an op of one test with
    a cached op of an earlier one ("Shape mismatch in the collective
    instance ..."). TensorFlow's own tests do the same
    (distribute/strategy_combinations.py)."""
    from tensorflow.python.distribute import mirrored_strategy
    mirrored_strategy.MirroredStrategy._collective_key_base += 100000
    yield
