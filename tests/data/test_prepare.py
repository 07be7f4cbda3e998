"""`python -m fsan_lightning.data.prepare pca`: streaming PCA against a full in-memory reference."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from fsan_lightning.data.features import HDF5FeatureStore
from fsan_lightning.data.prepare import fit_pca, main


@pytest.fixture
def big(tmp_path):
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(12, 12))
    path = tmp_path / "in.hdf5"
    data = {}
    with h5py.File(path, "w") as f:
        for i, t in enumerate([10, 25, 3, 17, 30, 8]):
            x = (rng.normal(size=(t, 12)) * np.linspace(3, 0.1, 12)) @ mix + 100.0  # a large offset
            data[f"v{i}"] = x.astype(np.float32)
            f[f"v{i}/c3d_features"] = data[f"v{i}"]
    return path, data


def reference_pca(x, dim):
    mean = x.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(x.T.astype(np.float64)))
    order = np.argsort(evals)[::-1][:dim]
    u = evecs[:, order]
    u *= np.sign(u[np.abs(u).argmax(0), np.arange(dim)])
    return mean, u, evals[order]


def test_streaming_pca_matches_full_pca(big, tmp_path, capsys):
    path, data = big
    out = tmp_path / "out.hdf5"
    assert main(["pca", str(path), str(out), "--dim", "4", "--chunk-rows", "7"]) == 0
    allx = np.concatenate([data[k] for k in sorted(data)]).astype(np.float64)
    mean, u, s = reference_pca(allx, 4)
    with h5py.File(out) as f:
        assert sorted(f) == sorted(data)
        for vid, x in data.items():
            y = f[f"{vid}/c3d_features"][()]
            assert y.dtype == np.float32 and y.shape == (len(x), 4)
            np.testing.assert_allclose(y, (x - mean) @ u, rtol=1e-4, atol=1e-3)
    with h5py.File(str(out) + ".pca.hdf5") as f:
        np.testing.assert_allclose(f["data/S"][()], s, rtol=1e-4)
        np.testing.assert_allclose(f["data/x_mean"][()], mean, rtol=1e-6)
        assert f["data/U"].shape == (12, 4)


def test_pca_fits_on_the_given_videos_only(big, tmp_path):
    path, data = big
    fit = tmp_path / "fit.txt"
    fit.write_text("v1\nv4\n")
    out = tmp_path / "out.hdf5"
    assert main(["pca", str(path), str(out), "--dim", "3", "--fit-vids", str(fit)]) == 0
    mean, u, _ = reference_pca(np.concatenate([data["v1"], data["v4"]]).astype(np.float64), 3)
    with h5py.File(out) as f:
        assert len(f) == 6  # every video is projected
        np.testing.assert_allclose(f["v2/c3d_features"][()], (data["v2"] - mean) @ u, rtol=1e-4, atol=1e-3)


def test_pca_errors(big, tmp_path, capsys):
    path, _ = big
    assert main(["pca", str(path), str(tmp_path / "o.h5"), "--dim", "20"]) == 2
    assert "exceeds the feature width 12" in capsys.readouterr().err
    fit = tmp_path / "fit.txt"
    fit.write_text("v1\nnope\n")
    assert main(["pca", str(path), str(tmp_path / "o.h5"), "--dim", "2", "--fit-vids", str(fit)]) == 2
    assert "1 fit videos have no features" in capsys.readouterr().err
    with pytest.raises(ValueError):
        fit_pca(HDF5FeatureStore(path), [], 2)
