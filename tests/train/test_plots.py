"""curves.png from metrics.csv: written with matplotlib, skipped cleanly without it."""

import builtins
from pathlib import Path

import pytest

from hyenapixel.train.plots import plot_training_curves

CSV = """epoch,step,lr,train_loss,val_loss,val_top1,val_top5,ema_top1
1,10,0.001,0.9,0.8,60.0,100.0,
2,20,0.001,0.5,0.45,82.5,100.0,
3,30,0.0005,0.3,0.31,91.0,100.0,
"""


def test_plot_from_metrics_csv(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib import image

    (tmp_path / "metrics.csv").write_text(CSV)
    out = plot_training_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    pixels = image.imread(out)
    assert pixels.ndim == 3 and pixels.shape[1] > pixels.shape[0] > 100  # two panels side by side
    assert pixels[..., :3].std() > 0.05  # something was drawn
    assert not list(tmp_path.glob("*.tmp.png"))
    (tmp_path / "empty.csv").write_text(CSV.splitlines()[0] + "\n")
    assert plot_training_curves(tmp_path / "empty.csv", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_without_matplotlib_nothing_is_written(tmp_path: Path, monkeypatch) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    (tmp_path / "metrics.csv").write_text(CSV)
    assert plot_training_curves(tmp_path / "metrics.csv", tmp_path / "curves.png") is None
    assert not (tmp_path / "curves.png").exists()
