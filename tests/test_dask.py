"""lavaconv.dask.run: per-sample model.run on Dask's schedulers, a process cluster, faults.

Every result is compared with ``Model(conv, **kw).run(data[i])`` on a fresh model for
each sample (exactly for the integer models; float64 to 1e-12 relative), and a few
with the plain reference of tests/reference.py. The cluster tests use one
``LocalCluster(processes=True, n_workers=2, threads_per_worker=1)`` on 127.0.0.1
(module fixture); every wait is bounded.
"""

from __future__ import annotations

import os
import pickle
import signal
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import model_reference
from strategies import geometries, int8_weights, seeds

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import numba  # noqa: E402

import lavaconv  # noqa: E402
import lavaconv.dask as ldask  # noqa: E402
from lavaconv import Conv, PyConvModelBitAcc, PyConvModelFixed, PyConvModelFloat  # noqa: E402

TAGS = {"floating_pt": PyConvModelFloat, "fixed_pt": PyConvModelFixed,
        "bit_accurate_loihi": PyConvModelBitAcc}
#: Bound on every wait for the cluster (s); the whole file runs in well under 3 min.
TIMEOUT = 120


def _conv(g, weight, **kw):
    return Conv(weight=weight, input_shape=g["input_shape"], padding=g["padding"],
                stride=g["stride"], dilation=g["dilation"], groups=g["groups"], **kw)


def _small(seed=0, num_message_bits=0, **kw):
    """A 3x3, 2 -> 4 channel layer on 9x7 frames, padding 1, stride (1, 2)."""
    rng = np.random.default_rng(seed)
    g = dict(input_shape=(9, 7, 2), padding=(1, 1), stride=(1, 2), dilation=(1, 1), groups=1)
    w = int8_weights(rng, (4, 3, 3, 2))
    return _conv(g, w, num_message_bits=num_message_bits, **kw)


def _data(rng, conv, n, t, num_message_bits=0, density=0.3):
    shape = (n,) + conv.input_shape + (t,)
    active = rng.random(shape) < density
    if num_message_bits == 0:
        return active
    half = 2 ** (num_message_bits - 1)
    return (active * rng.integers(-half, half, size=shape)).astype(np.int16)


def _per_sample(cls, conv, x, **kw):
    """The expected result: each sample alone on a fresh (reset) model."""
    outs = [cls(conv, **kw).run(x[i]) for i in range(x.shape[0])]
    if not outs:
        return np.zeros((0,) + conv.output_shape + (x.shape[-1],), cls.out_dtype)
    return np.stack(outs)


def _assert_same(got, expected):
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
    else:
        np.testing.assert_array_equal(got, expected)


# -- the default (threaded) scheduler ------------------------------------------------
@settings(max_examples=min(20, settings.default.max_examples))
@given(g=geometries(max_size=8), seed=seeds(), tag=st.sampled_from(sorted(TAGS)),
       n=st.integers(1, 6), t=st.integers(1, 5), chunk=st.integers(1, 4),
       numpy_input=st.booleans())
def test_threaded_matches_per_sample(g, seed, tag, n, t, chunk, numpy_input):
    rng = np.random.default_rng(seed)
    conv = _conv(g, int8_weights(rng, g["weight_shape"]))
    x = _data(rng, conv, n, t)
    data = x if numpy_input else da.from_array(x, chunks=(chunk, -1, -1, -1, -1))
    out = ldask.run(conv, data, tag)
    assert isinstance(out, da.Array)
    assert out.shape == (n,) + conv.output_shape + (t,)
    assert out.dtype == TAGS[tag].out_dtype
    if not numpy_input:
        assert out.chunks[0] == data.chunks[0]
    assert all(len(c) == 1 for c in out.chunks[1:])
    _assert_same(out.compute(), _per_sample(TAGS[tag], conv, x))


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_matches_plain_reference(tag):
    """Graded payloads, against tests/reference.py (written from SPEC, not from the code)."""
    rng = np.random.default_rng(5)
    conv = _small(5, num_message_bits=4)
    x = _data(rng, conv, 3, 4, num_message_bits=4)
    got = ldask.run(conv, da.from_array(x, chunks=(2, -1, -1, -1, -1)), tag).compute()
    name = {"floating_pt": "float", "fixed_pt": "fixed", "bit_accurate_loihi": "bitacc"}[tag]
    geo = dict(stride=(1, 2), padding=(1, 1), dilation=(1, 1), groups=1)
    for i in range(3):
        frames = [x[i, ..., k] for k in range(4)]
        expected, _ = model_reference(frames, conv.weight.init, geo, name, num_message_bits=4)
        for k in range(4):
            np.testing.assert_array_equal(got[i, ..., k], expected[k])


def test_known_answer_delay_and_weight():
    """A 1x1 kernel of weight 3 on one channel: out[i, x, y, 0, t] = 3 * s[i, x, y, 0, t-1].

    Lava's one-step delay (SPEC 6): out[..., 0] = 0 for every sample (each starts from
    reset), then each spike contributes its single weight, 3, one step later.
    """
    conv = Conv(weight=np.full((1, 1, 1, 1), 3, np.int8), input_shape=(4, 3, 1))
    x = np.zeros((3, 4, 3, 1, 4), np.int8)
    x[0, 1, 2, 0, 0] = 1
    x[1, 3, 0, 0, 2] = 1
    x[2, 0, 0, 0, 3] = 1          # the last step: its result is never emitted
    x[2, 2, 1, 0, 0] = 1
    expected = np.zeros((3, 4, 3, 1, 4), np.int32)
    expected[0, 1, 2, 0, 1] = 3
    expected[1, 3, 0, 0, 3] = 3
    expected[2, 2, 1, 0, 1] = 3
    out = ldask.run(conv, da.from_array(x, chunks=(1, -1, -1, -1, -1))).compute()
    np.testing.assert_array_equal(out, expected)


def test_bit_accurate_class_with_kwargs():
    rng = np.random.default_rng(2)
    conv = _small(2, num_message_bits=6, weight_exp=-2, num_weight_bits=6)
    kw = dict(exponent_mode="per_weight", num_accum_bits=9, accumulator_overflow="saturate",
              message_overflow="wrap")
    x = (rng.integers(-100, 100, (5,) + conv.input_shape + (4,))
         * (rng.random((5,) + conv.input_shape + (4,)) < 0.5)).astype(np.int32)
    out = ldask.run(conv, da.from_array(x, chunks=((2, 2, 1), -1, -1, -1, -1)),
                    PyConvModelBitAcc, **kw)
    assert out.chunks[0] == (2, 2, 1)
    got = out.compute()
    _assert_same(got, _per_sample(PyConvModelBitAcc, conv, x, **kw))
    # saturated to 9 bits somewhere, so the options really reached the model
    assert got.max() == 255 or got.min() == -256
    plain = ldask.run(conv, x, PyConvModelBitAcc, message_overflow="wrap").compute()
    assert not np.array_equal(plain, got)


def test_other_axes_rechunked_and_n_chunks_kept():
    rng = np.random.default_rng(3)
    conv = _small(3)
    x = _data(rng, conv, 5, 6)
    data = da.from_array(x, chunks=(2, 4, 3, 1, 2))
    out = ldask.run(conv, data, "fixed_pt")
    assert out.chunks[0] == (2, 2, 1)
    assert out.chunks[1:] == tuple((s,) for s in conv.output_shape) + ((6,),)
    _assert_same(out.compute(), _per_sample(PyConvModelFixed, conv, x))


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_schedulers_and_float_input(scheduler):
    rng = np.random.default_rng(4)
    conv = _small(4)
    x = _data(rng, conv, 4, 3) * rng.uniform(-2, 2, (4,) + conv.input_shape + (3,))
    out = ldask.run(conv, da.from_array(x, chunks=(3, -1, -1, -1, -1)), "floating_pt")
    _assert_same(out.compute(scheduler=scheduler), _per_sample(PyConvModelFloat, conv, x))


def test_numpy_default_chunks():
    rng = np.random.default_rng(6)
    conv = _small(6)
    x = _data(rng, conv, 7, 3)
    out = ldask.run(conv, x)
    sizes = out.chunks[0]
    assert sum(sizes) == 7 and max(sizes) - min(sizes) <= 1
    assert len(sizes) >= min(7, dask.system.CPU_COUNT)
    with dask.config.set({"array.chunk-size": "1KiB"}):   # < two samples of in + out
        small = ldask.run(conv, x)
    assert small.chunks[0] == (1,) * 7
    _assert_same(small.compute(), _per_sample(PyConvModelFixed, conv, x))


def test_unknown_number_of_samples():
    """N unknown to Dask (boolean selection), and chunks along X to merge."""
    rng = np.random.default_rng(12)
    conv = _small(12)
    x = _data(rng, conv, 5, 3)
    keep = np.array([True, False, True, True, False])
    data = da.from_array(x, chunks=(2, 4, -1, -1, -1))[da.from_array(keep, chunks=2)]
    out = ldask.run(conv, data, "fixed_pt")
    assert np.isnan(out.shape[0])
    _assert_same(out.compute(), _per_sample(PyConvModelFixed, conv, x[keep]))


def test_empty_batch_and_zero_steps():
    conv = _small(7)
    x = np.zeros((0,) + conv.input_shape + (3,), bool)
    assert ldask.run(conv, x).compute().shape == (0,) + conv.output_shape + (3,)
    x = np.zeros((2,) + conv.input_shape + (0,), bool)
    out = ldask.run(conv, x).compute()
    assert out.shape == (2,) + conv.output_shape + (0,) and out.dtype == np.int32


class _Counting(PyConvModelFixed):
    runs = 0

    def run(self, data, out=None):
        type(self).runs += 1
        return super().run(data, out)


def test_lazy_until_compute():
    rng = np.random.default_rng(8)
    conv = _small(8)
    x = _data(rng, conv, 4, 2)
    _Counting.runs = 0
    out = ldask.run(conv, da.from_array(x, chunks=(1, -1, -1, -1, -1)), _Counting)
    assert _Counting.runs == 0
    got = out.compute()
    assert _Counting.runs == 4
    _assert_same(got, _per_sample(PyConvModelFixed, conv, x))


def _thread_probe():
    """A model class (local, so cloudpickle ships it by value) whose output is the thread
    counts inside the task: ``1000 * lavaconv.get_num_threads() + numba.get_num_threads()``
    (Numba's count of the task thread, as applied by the kernel launch).
    """

    class ThreadProbe(PyConvModelFixed):
        def run(self, data, out=None):
            result = super().run(data, out)
            result[...] = 1000 * lavaconv.get_num_threads() + numba.get_num_threads()
            return result

    return ThreadProbe


def test_thread_rule_threaded_and_synchronous():
    pool = int(numba.config.NUMBA_NUM_THREADS)
    conv = _small(9)
    x = np.ones((4,) + conv.input_shape + (2,), bool)
    data = da.from_array(x, chunks=(1, -1, -1, -1, -1))
    probe = _thread_probe()
    before = lavaconv.get_num_threads()
    try:
        lavaconv.set_num_threads(pool)
        with dask.config.set({"num_workers": 2}):  # a pool of two threads
            got = ldask.run(conv, data, probe).compute(scheduler="threads")
        share = max(1, pool // 2)
        assert (got == 1000 * share + share).all()
        assert lavaconv.get_num_threads() == pool  # restored after the run
        got = ldask.run(conv, data, probe).compute(scheduler="synchronous")
        assert (got == 1000 * pool + pool).all()  # one task at a time: the setting as is
        got = ldask.run(conv, data, probe, threads_per_task=1).compute(scheduler="sync")
        assert (got == 1001).all()
        assert lavaconv.get_num_threads() == pool
    finally:
        lavaconv.set_num_threads(before)


# -- validation ------------------------------------------------------------------------
def test_bad_arguments_fail_now():
    conv = _small(10)
    good = np.zeros((2,) + conv.input_shape + (3,), bool)
    with pytest.raises(ValueError, match="conv must be a lavaconv.Conv"):
        ldask.run(PyConvModelFixed(conv), good)
    with pytest.raises(ValueError, match="5-D"):
        ldask.run(conv, good[0])
    with pytest.raises(ValueError, match=r"data must have shape \(N,\) \+ \(9, 7, 2\)"):
        ldask.run(conv, np.zeros((2, 9, 8, 2, 3), bool))
    with pytest.raises(ValueError, match="5-D"):
        ldask.run(conv, da.zeros((2, 9, 7, 2), chunks=1))
    with pytest.raises(ValueError, match="bool, integer or float"):
        ldask.run(conv, good.astype(complex))
    with pytest.raises(ValueError, match="model must be one of 'floating_pt'"):
        ldask.run(conv, good, "fixed")
    with pytest.raises(ValueError, match="the class, not an instance"):
        ldask.run(conv, good, PyConvModelFixed(conv))
    with pytest.raises(ValueError, match="model must be a tag"):
        ldask.run(conv, good, dict)
    with pytest.raises(ValueError, match=r"model_kwargs \['num_acum_bits'\] do not fit"):
        ldask.run(conv, good, PyConvModelBitAcc, num_acum_bits=8)
    with pytest.raises(ValueError, match="do not fit PyConvModelFixed"):
        ldask.run(conv, good, "fixed_pt", num_accum_bits=8)
    with pytest.raises(ValueError, match="num_accum_bits"):
        ldask.run(conv, good, "bit_accurate_loihi", num_accum_bits=40)
    with pytest.raises(ValueError, match="accumulator_overflow"):
        ldask.run(conv, good, "bit_accurate_loihi", accumulator_overflow="clip")
    with pytest.raises(ValueError, match="threads_per_task"):
        ldask.run(conv, good, threads_per_task=0)
    with pytest.raises(ValueError, match="dask collection"):
        ldask.run(conv, dask.delayed(good))


def test_bad_values_fail_at_compute():
    conv = _small(11, num_message_bits=3)
    x = np.full((2,) + conv.input_shape + (2,), 7, np.int16)   # outside the signed 3 bits
    out = ldask.run(conv, x, "bit_accurate_loihi")
    with pytest.raises(ValueError, match="outside the signed 3-bit range"):
        out.compute()


# -- what crosses to the workers ----------------------------------------------------------
def test_graph_holds_the_spec_once_and_small_tasks():
    from lavaconv.workloads import WORKLOADS

    wl = WORKLOADS["mid"]
    _, w = wl.make(0.01)
    conv = Conv(weight=w, input_shape=wl.input_shape, padding=wl.padding)
    assert len(pickle.dumps(conv)) < w.nbytes + 4096
    data = da.zeros((8,) + wl.input_shape + (2,), dtype=bool, chunks=(1, -1, -1, -1, -1))
    out = ldask.run(conv, data, "bit_accurate_loihi", num_accum_bits=20)
    graph = dict(out.__dask_graph__())
    specs = [k for k, v in graph.items()
             if isinstance(getattr(v, "value", None), ldask._ModelSpec)]
    assert len(specs) == 1
    spec = graph[specs[0]].value
    assert len(pickle.dumps(spec)) < w.nbytes + 4096          # the Conv, little more
    runs = [v for k, v in graph.items() if isinstance(k, tuple) and k[0] == out.name]
    assert len(runs) == 8
    assert all(len(pickle.dumps(task)) < 1024 for task in runs)   # a reference, no weights


# -- a process cluster ------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
        dashboard_address=None, death_timeout=TIMEOUT)
    c = distributed.Client(cluster, timeout=TIMEOUT)
    c.wait_for_workers(2, timeout=TIMEOUT)
    yield c
    c.close(timeout=TIMEOUT)
    cluster.close(timeout=TIMEOUT)


def _gather(client, arr):
    return client.compute(arr).result(timeout=TIMEOUT)


@pytest.mark.parametrize("tag", sorted(TAGS))
@pytest.mark.parametrize("numpy_input", [False, True])
def test_cluster_matches_per_sample(client, tag, numpy_input):
    rng = np.random.default_rng(20)
    conv = _small(20)
    x = _data(rng, conv, 6, 4)
    data = x if numpy_input else da.from_array(x, chunks=(2, -1, -1, -1, -1))
    _assert_same(_gather(client, ldask.run(conv, data, tag)), _per_sample(TAGS[tag], conv, x))


def test_cluster_class_kwargs_and_built_once_per_worker(client):
    rng = np.random.default_rng(21)
    conv = _small(21, num_message_bits=5)
    kw = dict(num_accum_bits=10, accumulator_overflow="wrap", message_overflow="saturate")
    x = (rng.integers(-40, 40, (10,) + conv.input_shape + (3,))).astype(np.int8)
    out = ldask.run(conv, da.from_array(x, chunks=(1, -1, -1, -1, -1)), PyConvModelBitAcc,
                    **kw)
    _assert_same(_gather(client, out), _per_sample(PyConvModelBitAcc, conv, x, **kw))
    token = next(v.value.token for v in dict(out.__dask_graph__()).values()
                 if isinstance(getattr(v, "value", None), ldask._ModelSpec))
    builds = client.run(lambda: __import__("lavaconv.dask").dask._BUILDS.get(token, 0))
    assert len(builds) == 2
    assert all(b <= 1 for b in builds.values()) and sum(builds.values()) >= 1


def test_cluster_thread_rule(client):
    conv = _small(22)
    x = np.ones((4,) + conv.input_shape + (2,), bool)
    data = da.from_array(x, chunks=(1, -1, -1, -1, -1))
    probe = _thread_probe()
    assert (_gather(client, ldask.run(conv, data, probe)) == 1001).all()
    pools = client.run(lambda: int(__import__("numba").config.NUMBA_NUM_THREADS))
    two = min(2, *pools.values())
    got = _gather(client, ldask.run(conv, data, probe, threads_per_task=2))
    assert (got == 1001 * two).all()


def _slow_model(seconds):
    class Slow(PyConvModelFixed):
        def run(self, data, out=None):
            time.sleep(seconds)
            return super().run(data, out)

    return Slow


def test_killed_worker_recomputed(client):
    from distributed import futures_of

    rng = np.random.default_rng(23)
    conv = _small(23)
    n = 12
    x = _data(rng, conv, n, 5)
    expected = _per_sample(PyConvModelFixed, conv, x)
    out = ldask.run(conv, da.from_array(x, chunks=(1, -1, -1, -1, -1)), _slow_model(0.4))
    persisted = client.persist(out)
    futures = futures_of(persisted)
    deadline = time.monotonic() + TIMEOUT
    while sum(f.done() for f in futures) < 2:
        assert time.monotonic() < deadline, "no piece finished in time"
        time.sleep(0.02)
    done = [f for f in futures if f.done()]
    holders = dict(client.who_has(done))
    victim = next(iter(holders[done[0].key]))
    pids = client.run(os.getpid)
    finished_at_kill = sum(f.done() for f in futures)
    os.kill(pids[victim], signal.SIGKILL)
    assert finished_at_kill < n           # killed mid-computation
    got = client.compute(persisted).result(timeout=TIMEOUT)
    _assert_same(got, expected)
    assert victim not in client.scheduler_info()["workers"]
    # the piece that lived only on the victim was computed again elsewhere
    again = dict(client.who_has([done[0]]))[done[0].key]
    assert again and victim not in again
    client.wait_for_workers(2, timeout=TIMEOUT)   # the nanny restarted it
