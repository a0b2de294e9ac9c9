"""Data loaders: the embedded default and the real files in ../shared/data."""

import gzip

import numpy as np
import pytest

from tfvae import data


def test_default_is_embedded_and_binary():
    d = data.load_default()
    assert d.x_train.shape[1] == 64 and d.image_shape == (8, 8, 1)
    assert len(d.x_train) + len(d.x_test) == 1797
    assert set(np.unique(d.x_train)) <= {0.0, 1.0} and d.binary


def test_mnist_idx(data_dir):
    d = data.load_mnist(data_dir, binarization="none")
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert abs(d.x_train.mean() - 0.130660) < 1e-5  # the README's pixel mean
    np.testing.assert_array_equal(
        np.bincount(d.y_test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    s = data.load_mnist(data_dir, binarization="static", seed=0, subset=1000)
    assert set(np.unique(s.x_train)) == {0.0, 1.0}
    np.testing.assert_array_equal(
        s.x_train, data.load_mnist(data_dir, binarization="static", seed=0, subset=1000).x_train
    )


def test_binarized_mnist(data_dir):
    d = data.load_binarized_mnist(data_dir)
    assert d.x_train.shape == (50000, 784) and d.x_test.shape == (10000, 784)
    assert abs(d.x_test.mean() - 0.13251) < 1e-4


def test_frey_face(data_dir):
    d = data.load_frey_face(data_dir)
    assert d.x_train.shape[1] == 560 and len(d.x_train) + len(d.x_test) == 1965
    assert not d.binary and d.image_shape == (28, 20, 1)
    assert 0 < d.x_train.min() and d.x_train.max() < 1


def test_dynamic_binarization_redraws_each_epoch():
    x = np.full((8, 5), 0.5, np.float32)
    ds = data.make_dataset(x, batch_size=8, shuffle=False, dynamic_binarization=True)
    a, b = [next(iter(ds)).numpy() for _ in range(1)] + [list(ds)[0].numpy()]
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert not np.array_equal(a, b)


def test_missing_and_corrupt_files(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load_mnist(str(tmp_path / "nope"))
    (tmp_path / "mnist").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images"):
        data.load_mnist(str(tmp_path))
    with gzip.open(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(
            bytes([0, 0, 8, 3])
            + (10).to_bytes(4, "big")
            + (28).to_bytes(4, "big") * 2
            + b"\0" * 100
        )
    with pytest.raises(ValueError, match="truncated"):
        data.load_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("cifar")
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="TFVAE_DATA_DIR"):
        data.load_mnist()


def test_load_array(tmp_path):
    x = np.random.default_rng(0).random((50, 4, 5)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    d = data.load_array(str(tmp_path / "a.npy"))
    assert d.input_dim == 20 and d.image_shape == (4, 5, 1)
    assert len(d.x_train) + len(d.x_test) == 50 and not d.binary
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read"):
        data.load_array(str(tmp_path / "bad.npy"))


@pytest.mark.parametrize(
    "values, stored",
    [
        (lambda rng: (rng.random((50, 7)) < 0.3).astype(np.float32), np.uint8),  # binary pixels
        (lambda rng: (rng.integers(0, 256, (50, 7)) / 255.0).astype(np.float32), np.uint8),
        (lambda rng: rng.random((50, 7), dtype=np.float32), np.float32),  # not 8-bit: kept
        (lambda rng: rng.integers(0, 300, (50, 7)).astype(np.float32), np.float32),  # > 255
        (lambda rng: -(rng.random((50, 7)) < 0.3).astype(np.float32), np.float32),  # negative
    ],
)
def test_make_dataset_stores_compactly_and_yields_identical_batches(values, stored):
    """Byte-representable data is held as uint8, yet the batches are bit-identical float32
    rows of x: each pass a permutation (new each pass, the same sequence for the same seed),
    in order without shuffling, the last batch of each pass partial."""
    import tensorflow as tf

    x = values(np.random.default_rng(0))
    codes, decode = data.compact_storage(x)
    assert codes.dtype == stored
    np.testing.assert_array_equal(np.asarray(decode(tf.constant(codes))), x)

    def passes(ds, n=2):
        out = []
        for _ in range(n):
            batches = [b.numpy() for b in ds]
            assert all(b.dtype == np.float32 for b in batches)
            assert [len(b) for b in batches] == [16, 16, 16, 2]
            out.append(np.concatenate(batches))
        return out

    def rows(a):
        return sorted(r.tobytes() for r in a)

    first, second = passes(data.make_dataset(x, batch_size=16, shuffle=True, seed=3))
    assert rows(first) == rows(x) and rows(second) == rows(x)
    assert not np.array_equal(first, second) and not np.array_equal(first, x)
    again = passes(data.make_dataset(x, batch_size=16, shuffle=True, seed=3))
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    assert not np.array_equal(passes(data.make_dataset(x, 16, seed=4), 1)[0], first)
    np.testing.assert_array_equal(passes(data.make_dataset(x, 16, shuffle=False), 1)[0], x)


def test_make_dataset_repeat_and_drop_remainder():
    import tensorflow as tf

    x = np.arange(10, dtype=np.float32)[:, None]
    ds = data.make_dataset(x, batch_size=4, repeat=True, drop_remainder=True, seed=0)
    assert ds.cardinality().numpy() == tf.data.INFINITE_CARDINALITY
    epochs = np.concatenate([b.numpy() for b in ds.take(6)]).ravel().reshape(3, 8)
    assert all(len(set(e)) == 8 for e in epochs)  # within an epoch, no example twice
    assert data.make_dataset(x, batch_size=4, drop_remainder=True).cardinality().numpy() == 2
    with pytest.raises(ValueError, match="leaves no batch"):
        data.make_dataset(x, batch_size=11, drop_remainder=True)


def test_dynamic_binarization_of_grey_levels_held_as_bytes():
    """8-bit grey levels (uint8 storage) still binarize with P(x=1) = grey level."""
    x = np.tile(np.array([[0.0, 64 / 255, 1.0]], np.float32), (4000, 1))
    assert data.compact_storage(x)[0].dtype == np.uint8
    ds = data.make_dataset(x, batch_size=4000, shuffle=False, dynamic_binarization=True)
    b = next(iter(ds)).numpy()
    assert set(np.unique(b)) <= {0.0, 1.0}
    assert b[:, 0].sum() == 0 and b[:, 2].sum() == 4000
    assert abs(b[:, 1].mean() - 64 / 255) < 4 * np.sqrt(0.25 / 4000)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_epoch_dataset_batches_follow_its_documented_keys(scale):
    """Epoch e is x[stateless_shuffle(range(N), seed=(2*seed, e))] in consecutive batches,
    whatever the storage (uint8 here), so a resumed run sees the batches of an unbroken one."""
    import tensorflow as tf

    from tfvae.checkpointing import epoch_dataset

    rng = np.random.default_rng(1)
    x = (rng.integers(0, 256 if scale == 255.0 else 2, (37, 5)) / scale).astype(np.float32)
    ds, steps = epoch_dataset(x, batch_size=8, seed=3, initial_epoch=1, epochs=3)
    batches = [b.numpy() for b in ds]
    assert steps == 5 and [len(b) for b in batches] == [8, 8, 8, 8, 5] * 2
    for e, got in zip((1, 2), (np.concatenate(batches[:5]), np.concatenate(batches[5:]))):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(37, dtype=tf.int64), seed=tf.constant([6, e], tf.int64)
        ).numpy()
        np.testing.assert_array_equal(got, x[order])


def test_pipelines_prefetch_without_tf_data_autotuning():
    # Autotuning's thread makes deleting an iterator wait for its next wake-up (up to 60 s
    # periods), which Keras does as fit returns; our pipelines turn it off and prefetch a
    # fixed number of batches instead.
    from tfvae.checkpointing import epoch_dataset

    x = np.zeros((10, 4), np.float32)
    two_epochs, _ = epoch_dataset(x, 4, seed=0, initial_epoch=0, epochs=2)
    for ds in (data.make_dataset(x, 4), two_epochs):
        assert ds.options().autotune.enabled is False
        assert ds.element_spec.shape.as_list() == [None, 4]
        assert sum(int(b.shape[0]) for b in ds) in (10, 20)
