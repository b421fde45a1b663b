"""matplotlib as an optional dependency, for the pictures that runs write beside their results (``curves.png`` of
a training run, ``ablation.png`` of an ablation). Torch-free, importable from every layer; it never touches
pyplot's figure list or the global backend.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hyenapixel.paths import atomic_write

__all__ = ["have_matplotlib", "new_figure", "save_png"]

log = logging.getLogger("hyenapixel")


def have_matplotlib(what: str) -> bool:
    """Whether matplotlib (the ``analysis`` extra) is installed; logs that ``what`` is not drawn if not."""
    try:
        import matplotlib  # noqa: F401  (only its absence is checked here)
    except ImportError:
        log.info("matplotlib is not installed: no %s (pip install 'hyenapixel[analysis]')", what)
        return False
    return True


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib ``Figure`` on its own Agg canvas (drawn off-screen, unknown to pyplot); ``kwargs`` go to
    ``Figure``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, png: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write ``fig`` to ``png`` atomically (:func:`hyenapixel.paths.atomic_write`); returns the path."""
    return atomic_write(png, lambda f: fig.savefig(f, format="png", dpi=dpi))
