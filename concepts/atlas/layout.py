"""Where pictures sit on a page: the displayed size of a crop, and the CSS that lays a map of the whole
model-input square over a crop of it (the tint)."""
from __future__ import annotations

from typing import Iterable


def crop_frame(box: Iterable[int], display: int) -> tuple[int, int]:
    """Displayed (width, height) of a crop ``box`` whose longer side is shown ``display`` pixels wide."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    scale = display / max(w, h)
    return round(w * scale), round(h * scale)


def crop_style(box: Iterable[int], input_size: int, display: int = 112) -> dict[str, str]:
    """CSS sizes that show the ``box`` (x0, y0, x1, y1 in model-input pixels) of a full picture
    in a frame ``display`` pixels wide: the picture is scaled and shifted inside the frame."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w = max(x1 - x0, 1.0)
    h = max(y1 - y0, 1.0)
    scale = display / w
    return {
        "frame": f"width:{display}px;height:{round(h * scale)}px",
        "img": f"width:{input_size * scale:.1f}px;height:{input_size * scale:.1f}px;"
               f"left:{-x0 * scale:.1f}px;top:{-y0 * scale:.1f}px",
    }


#: the displayed width of a crop the stylesheet gives (``.crop`` in static/atlas.css): a crop of another width
#: says its own
CSS_CROP_WIDTH = 112


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}".rstrip("0").rstrip(".") + "%"


def tint_style(box: Iterable[int], input_size: int) -> str:
    """The style of a map of the model-input square drawn over the crop ``box``, in percentages of the crop's
    frame: right at any displayed size (the phone layout shrinks the crops)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    return (f"width:{_percent(input_size / w)};height:{_percent(input_size / h)};"
            f"left:{_percent(-x0 / w)};top:{_percent(-y0 / h)}")
