"""The README's Dask recipe: the emitted NumPy module over a dask.array chunked by rows,
computed on a LocalCluster of worker processes (loopback only)."""

from __future__ import annotations

import dask.array as da
import distributed
import numpy
import pytest


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
        yield client
    cluster.close()


def test_softmax_and_gradient_on_a_cluster_equal_numpy(generated, client):
    g = generated(7)
    module_path = g.folder / "softmax_k7.py"
    client.upload_file(str(module_path))  # ships the module to every worker

    def softmax_block(block):
        import softmax_k7  # imported on the worker, from the uploaded file

        return softmax_k7.softmax(block)

    def grad_block(z_block, y_block):
        import softmax_k7

        return softmax_k7.cross_entropy_grad(z_block, y_block)

    rng = numpy.random.default_rng(0)
    z = rng.normal(size=(20_000, 7)) * 5
    y = rng.dirichlet(numpy.ones(7), size=20_000)
    dz = da.from_array(z, chunks=(2_500, 7))  # chunked by rows only: each row stays whole
    dy = da.from_array(y, chunks=(2_500, 7))
    s = da.map_blocks(softmax_block, dz, dtype=z.dtype).compute()
    grad = da.map_blocks(grad_block, dz, dy, dtype=z.dtype).compute()
    workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2  # really two processes
    numpy.testing.assert_array_equal(s, g.numpy_module.softmax(z))
    numpy.testing.assert_array_equal(grad, g.numpy_module.cross_entropy_grad(z, y))
