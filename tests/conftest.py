"""Shared pytest setup: two logical CPU devices for multi-device tests, and
memory and flags released after every test so that one pytest process does
not grow test after test (the whole suite runs in one process)."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN build serves large tensors from a BFC pool that never
# gives memory back to the system: the peak of one test (a published-size
# model of 333 M parameters) then stays in the process for every later test.
# The system allocator returns freed tensors; the oneDNN kernels, and so the
# numbers, are the same. Set before TensorFlow loads; subprocesses inherit it.
os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
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

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import gc  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

# Packages whose modules may define their own absl FlagValues (`FLAGS`).
_OUR_PACKAGES = ("avl", "howto", "kinetics", "tfrecord_tools", "vidcore",
                 "yt8m")


def _libc_malloc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_malloc_trim()


# Tests that start a process needing several GB (full-size published
# presets, the GPU check's long graphs, the Kinetics presets) are marked
# `@pytest.mark.xdist_group("memory_heavy")` in their files: under
# pytest-xdist (`-n 2 --dist loadgroup`, the README's command) they run one
# after another in one worker, so that two of them never run at once, and
# they run first, while the processes beside them are still small.
_MEMORY_HEAVY_GROUP = "memory_heavy"


def _memory_heavy(item):
    marker = item.get_closest_marker("xdist_group")
    return marker is not None and _MEMORY_HEAVY_GROUP in marker.args


def pytest_collection_modifyitems(session, config, items):
    """Moves the memory-heavy subprocess tests to the front (stable)."""
    first = [item for item in items if _memory_heavy(item)]
    if first:
        rest = [item for item in items if not _memory_heavy(item)]
        items[:] = first + rest


def pytest_collection_finish(session):
    """Moves everything alive after the imports and collection into the
    garbage collector's permanent generation, so that the collection after
    each test scans only what tests made (a full collection over TensorFlow
    and Keras takes about a second on a loaded machine)."""
    gc.collect()
    gc.freeze()


def _module_flag_values():
    """The global FLAGS and every FlagValues our imported modules own."""
    found = {id(flags.FLAGS): flags.FLAGS}
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in _OUR_PACKAGES:
            continue
        values = getattr(module, "FLAGS", None)
        if isinstance(values, flags.FlagValues):
            found.setdefault(id(values), values)
    return found.values()


def _forget_custom_gradients():
    """Drops the gradient functions that ``tf.custom_gradient`` registered
    while graphs were traced.

    In a graph, each ``tf.custom_gradient`` call (every
    ``ReplicaContext.all_reduce`` has one, so every traced training step
    does) registers its gradient function in TensorFlow's global gradient
    registry under a new name and never removes it. The function's closure
    holds the traced tensors, so each test's training graph (and the
    functions and buffers it keeps alive) stayed in the process for the
    rest of the run: 0.6 GB per in-process AVLnet training test. A test's
    graphs are not differentiated after it ends."""
    from tensorflow.python.framework import ops
    registry = ops._gradient_registry._registry  # pylint: disable=protected-access
    for name in [n for n in registry if n.startswith("CustomGradient-")]:
        del registry[name]


@pytest.fixture(autouse=True)
def _release_after_test():
    """After each test: resets absl flags, Keras' global state and frees
    memory.

    In-process CLI runs parse flags into the global FLAGS (yt8m) or a
    family's own FlagValues (howto, kinetics, converters); unparsing them
    here means no value leaks into a later test. Models, datasets,
    strategies and traced functions form reference cycles, freed only by
    the garbage collector; malloc_trim then hands the freed heap back to
    the system."""
    yield
    for values in _module_flag_values():
        values.unparse_flags()
    _forget_custom_gradients()
    keras.backend.clear_session(free_memory=True)
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_in_basetemp(tmp_path_factory):
    """Temporary files of this process and of the processes it starts
    (Python's ``tempfile``: Apache Beam's ``beam-temp*`` folders, the CLIs'
    scratch files) go to a folder in pytest's base temporary folder, which
    pytest prunes after later runs, instead of the system's."""
    import tempfile
    folder = str(tmp_path_factory.mktemp("tempfile"))
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = folder
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    yield folder
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before
    tempfile.tempdir = None


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


@pytest.fixture
def run_workers():
    """Runs one CLI as the workers of a local cluster, all at once.

    ``run_workers(["yt8m.eval", "--flag=..."], count)`` starts ``count``
    processes of ``python -m yt8m.eval ... --strategy=multi_worker``, each
    with the TF_CONFIG of worker I of a ``count``-worker cluster (the
    evaluation CLIs only read it: no server starts), waits for all and
    returns their CompletedProcess objects in worker order.
    """
    import json
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(args, count, timeout=600):
        cluster = {"worker": [f"localhost:{20000 + i}" for i in range(count)]}
        procs = []
        for index in range(count):
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {
                       "type": "worker", "index": index}})}
            procs.append(subprocess.Popen(
                [sys.executable, "-m", *args, "--strategy=multi_worker"],
                cwd=repo, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        done = []
        for index, proc in enumerate(procs):
            out, err = proc.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode,
                                                    out, err))
        for index, proc in enumerate(done):
            assert proc.returncode == 0, (index, proc.stdout, proc.stderr)
        return done

    return run
