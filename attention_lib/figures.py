# Hand-written support module (not generated from a notebook).
"""Real photos and feature maps for the chapters' figures.

The photos come from scikit-image, which ships them inside the package, so every
figure can be drawn offline. scikit-image and matplotlib belong to the ``book``
extra; they are imported only when these helpers are called.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attention_lib.validation import check_int

__all__ = ["PHOTOS", "load_photo", "oriented_filters", "filter_responses", "show_maps"]

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
        from skimage import data
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("load_photo needs scikit-image: pip install 'attention_lib[book]'") from error
    image = torch.from_numpy(getattr(data, name)().copy()).permute(2, 0, 1).float() / 255.0
    if size is not None:
        check_int(size, "size", minimum=8)
        h, w = image.shape[1:]
        scale = size / min(h, w)
        new_size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image[None], size=new_size, mode="bilinear", antialias=True, align_corners=False)[0]
    return image.clamp(0.0, 1.0)


def oriented_filters(orientations: int = 4, size: int = 9, wavelength: float = 4.0) -> torch.Tensor:
    """A bank of Gabor filters (cosine phase), one per orientation, as ``(C, 1, k, k)``.

    They stand in for the first layer of a CNN: each responds to edges and stripes
    of one orientation, which gives every channel a clear meaning in the figures.
    """
    check_int(orientations, "orientations")
    check_int(size, "size", minimum=3)
    half = size // 2
    coords = torch.arange(-half, half + 1, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    sigma = 0.56 * wavelength
    kernels = []
    for i in range(orientations):
        theta = math.pi * i / orientations
        along = x * math.cos(theta) + y * math.sin(theta)
        envelope = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
        kernel = envelope * torch.cos(2 * math.pi * along / wavelength)
        kernels.append(kernel - kernel.mean())  # zero mean: flat regions give no response
    bank = torch.stack(kernels)[:, None]
    return bank / bank.abs().sum(dim=(1, 2, 3), keepdim=True)


def filter_responses(image: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Rectified responses of ``filters`` to the grey-level ``image``: ``(C, H, W)``."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be (1 or 3, H, W), got shape {tuple(image.shape)}")
    grey = image.mean(dim=0, keepdim=True)[None]
    half = filters.shape[-1] // 2
    # Reflect padding: zero padding would make the photo's border look like an edge.
    grey = F.pad(grey, (half, half, half, half), mode="reflect")
    responses = F.conv2d(grey, filters)[0]
    return responses.abs()


def show_maps(maps: torch.Tensor, titles: list[str] | None = None, ncols: int | None = None,
              cmap: str = "magma", size: float = 2.4, suptitle: str | None = None):
    """Plot a stack of 2-D maps ``(C, H, W)`` side by side; return the figure."""
    import matplotlib.pyplot as plt

    maps = maps.detach().float().cpu()
    count = maps.shape[0]
    ncols = ncols or count
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < count:
            ax.imshow(maps[index], cmap=cmap)
            if titles is not None:
                ax.set_title(titles[index], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
