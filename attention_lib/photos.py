# Hand-written support module (not generated from a notebook).
"""Real photos for the figures and the generated test data: scikit-image's sample images.

scikit-image ships these photos inside the package, so every figure of the book (and the
small datasets that the tests and smoke runs generate) can be drawn offline.
scikit-image belongs to the ``notebooks`` extra; it is imported only when a photo is
loaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attention_lib.validation import check_int

__all__ = ["PHOTOS", "load_photo"]

#: Colour photos shipped with scikit-image that the chapters use.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


def load_photo(name: str = "chelsea", size: int | None = None) -> torch.Tensor:
    """Load a scikit-image sample photo as a ``(3, H, W)`` float tensor in ``[0, 1]``.

    Args:
        name: one of :data:`PHOTOS`.
        size: if given, resize so the shorter side has ``size`` pixels (antialiased).
    """
    if name not in PHOTOS:
        raise ValueError(f"name must be one of {PHOTOS}, got {name!r}")
    try:
        from skimage import data  # optional dependency: only the chapters and the tests need photos
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("load_photo needs scikit-image: pip install 'attention_lib[notebooks]'") from error
    image = torch.from_numpy(getattr(data, name)().copy()).permute(2, 0, 1).float() / 255.0
    if size is not None:
        check_int(size, "size", minimum=8)
        h, w = image.shape[1:]
        scale = size / min(h, w)
        new_size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image[None], size=new_size, mode="bilinear", antialias=True, align_corners=False)[0]
    return image.clamp(0.0, 1.0)
