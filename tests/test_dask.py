"""The README's Dask recipes, computed on a LocalCluster of worker processes (loopback only):
the array-API module called on dask.arrays chunked by rows, and the NumPy-only module shipped
to the workers and mapped over the blocks. Both equal the NumPy results bit for bit."""

from __future__ import annotations

import dask.array as da
import distributed
import numpy
import pytest

K = 7


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    with distributed.Client(cluster) as client:
        workers = client.run(lambda: __import__("os").getpid())
        assert len(set(workers.values())) == 2  # really two processes
        yield client
    cluster.close()


@pytest.fixture(scope="module")
def batch():
    rng = numpy.random.default_rng(0)
    z = rng.normal(size=(20_000, K)) * 5
    z[10, :3] = -numpy.inf  # masked classes travel too
    y = rng.dirichlet(numpy.ones(K), size=20_000)
    y[10, :3] = 0
    return z, y


def by_rows(x: numpy.ndarray) -> da.Array:
    return da.from_array(x, chunks=(2_500, K))  # each row stays whole


def test_array_api_module_on_dask_arrays_equals_numpy(generated, client, batch):
    g = generated(K)
    z, y = batch
    s = g.numpy_module.softmax(by_rows(z))
    grad = g.numpy_module.cross_entropy_grad(by_rows(z), by_rows(y))
    loss = g.numpy_module.cross_entropy_index(by_rows(z), da.from_array(y.argmax(-1), 2_500))
    assert isinstance(s, da.Array)  # lazy until computed on the cluster
    reference = g.numpy_only_module
    numpy.testing.assert_array_equal(s.compute(), reference.softmax(z))
    numpy.testing.assert_array_equal(grad.compute(), reference.cross_entropy_grad(z, y))
    numpy.testing.assert_array_equal(loss.compute(), reference.cross_entropy_index(z, y.argmax(-1)))


def test_numpy_only_module_shipped_to_the_workers_equals_numpy(generated, client, batch):
    g = generated(K)
    module_path = g.folder / "numpy-only" / f"softmax_k{K}.py"
    client.upload_file(str(module_path))  # ships the module to every worker

    def softmax_block(block):
        import softmax_k7  # imported on the worker, from the uploaded file

        return softmax_k7.softmax(block)

    def grad_block(z_block, y_block):
        import softmax_k7

        return softmax_k7.cross_entropy_grad(z_block, y_block)

    z, y = batch
    s = da.map_blocks(softmax_block, by_rows(z), dtype=z.dtype).compute()
    grad = da.map_blocks(grad_block, by_rows(z), by_rows(y), dtype=z.dtype).compute()
    numpy.testing.assert_array_equal(s, g.numpy_only_module.softmax(z))
    numpy.testing.assert_array_equal(grad, g.numpy_only_module.cross_entropy_grad(z, y))
