"""The tf.data pipelines: identical batches from compact storage, keyed epochs, sharding."""

import numpy as np
import pytest
import tensorflow as tf

from tfvae.data.input_pipeline import compact_storage, epoch_dataset, make_dataset


def test_dynamic_binarization_redraws_each_epoch():
    """Each pass draws x ~ Bernoulli(grey level) anew: binary, new each pass, P(1) = 0.5 here."""
    x = np.full((8, 5), 0.5, np.float32)
    ds = make_dataset(x, batch_size=8, shuffle=False, dynamic_binarization=True)
    passes = np.stack([next(iter(ds)).numpy() for _ in range(100)])  # [100, 8, 5]
    assert set(np.unique(passes)) == {0.0, 1.0}
    assert len({p.tobytes() for p in passes}) == 100  # 2^40 outcomes: no pass repeats
    assert abs(passes.mean() - 0.5) < 5 * np.sqrt(0.25 / passes.size)


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
    x = values(np.random.default_rng(0))
    codes, decode = compact_storage(x)
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

    first, second = passes(make_dataset(x, batch_size=16, shuffle=True, seed=3))
    assert rows(first) == rows(x) and rows(second) == rows(x)
    assert not np.array_equal(first, second) and not np.array_equal(first, x)
    again = passes(make_dataset(x, batch_size=16, shuffle=True, seed=3))
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    assert not np.array_equal(passes(make_dataset(x, 16, seed=4), 1)[0], first)
    np.testing.assert_array_equal(passes(make_dataset(x, 16, shuffle=False), 1)[0], x)


def test_make_dataset_repeat_and_drop_remainder():
    x = np.arange(10, dtype=np.float32)[:, None]
    ds = make_dataset(x, batch_size=4, repeat=True, drop_remainder=True, seed=0)
    assert ds.cardinality().numpy() == tf.data.INFINITE_CARDINALITY
    epochs = np.concatenate([b.numpy() for b in ds.take(6)]).ravel().reshape(3, 8)
    assert all(len(set(e)) == 8 for e in epochs)  # within an epoch, no example twice
    assert make_dataset(x, batch_size=4, drop_remainder=True).cardinality().numpy() == 2
    with pytest.raises(ValueError, match="leaves no batch"):
        make_dataset(x, batch_size=11, drop_remainder=True)


def test_dynamic_binarization_of_grey_levels_held_as_bytes():
    """8-bit grey levels (uint8 storage) still binarize with P(x=1) = grey level."""
    x = np.tile(np.array([[0.0, 64 / 255, 1.0]], np.float32), (4000, 1))
    assert compact_storage(x)[0].dtype == np.uint8
    ds = make_dataset(x, batch_size=4000, shuffle=False, dynamic_binarization=True)
    b = next(iter(ds)).numpy()
    assert set(np.unique(b)) <= {0.0, 1.0}
    assert b[:, 0].sum() == 0 and b[:, 2].sum() == 4000
    assert abs(b[:, 1].mean() - 64 / 255) < 4 * np.sqrt(0.25 / 4000)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_epoch_dataset_batches_follow_its_documented_keys(scale):
    """Epoch e is x[stateless_shuffle(range(N), seed=(2*seed, e))] in consecutive batches,
    whatever the storage (uint8 here), so a resumed run sees the batches of an unbroken one."""
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
    x = np.arange(40, dtype=np.float32).reshape(10, 4) / 40
    two_epochs, _ = epoch_dataset(x, 4, seed=0, initial_epoch=0, epochs=2)
    for ds, passes in ((make_dataset(x, 4), 1), (two_epochs, 2)):
        assert ds.options().autotune.enabled is False
        assert ds.element_spec.shape.as_list() == [None, 4]
        rows = np.concatenate([b.numpy() for b in ds])
        assert [len(b) for b in ds] == [4, 4, 2] * passes  # every example once per pass
        np.testing.assert_array_equal(np.sort(rows[:, 0]), np.sort(np.tile(x[:, 0], passes)))


@pytest.mark.parametrize("dynamic_binarization", [False, True])
def test_both_pipelines_batch_globally_and_shard_by_example(dynamic_binarization):
    """Under a multi-worker strategy each worker keeps its share of every global batch:
    there are no files to shard an in-memory array by, so the policy is DATA."""
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3) / 30
    keyed, steps = epoch_dataset(x, 4, 1, 0, 1, dynamic_binarization=dynamic_binarization)
    for ds in (make_dataset(x, 4, seed=1, dynamic_binarization=dynamic_binarization), keyed):
        policy = ds.options().experimental_distribute.auto_shard_policy
        assert policy == tf.data.experimental.AutoShardPolicy.DATA
        batches = [b.numpy() for b in ds]
        assert [len(b) for b in batches] == [4, 4, 2] and steps == 3
        if not dynamic_binarization:
            np.testing.assert_array_equal(np.sort(np.concatenate(batches)[:, 0]), x[:, 0])


def test_make_dataset_keeps_its_old_import_paths():
    import tfvae
    import tfvae.data.datasets

    assert tfvae.make_dataset is make_dataset and tfvae.data.datasets.make_dataset is make_dataset
