"""DenseCRF post-processing: the "CANet-Init + DenseCRF" row of Table 4 (paper section 5.1.3).

:class:`DenseCRF` refines a prediction with a fully connected CRF {Krähenbühl and Koltun,
NIPS 2011}. The paper does not give its settings; the defaults are those of the
``pydensecrf`` example (appearance kernel ``sxy=80, srgb=13``, weight 10; smoothness kernel
``sxy=3``, weight 3; Potts compatibility; 5 mean-field iterations), fixed, not tuned.

``backend="exact"`` (default, torch only): exact mean field with a dense kernel matrix on a
grid of at most ``max_side`` pixels a side, positions in original-image pixels, each kernel
normalised symmetrically, the result upsampled to the image's size.
``backend="pydensecrf"``: the permutohedral-lattice CRF of ``pydensecrf2``
(``pip install "canetlib[crf]"``) at full resolution with the same kernels and weights; the
two agree in kind, not pixel for pixel. ``backend="auto"``: ``pydensecrf`` when it imports,
else ``exact``; :meth:`DenseCRF.settings` records the backend that ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from canetlib.data.episodes import denormalise_image
from canetlib.model.extras import MissingExtraError

__all__ = ["CRF_BACKENDS", "DenseCRF"]

CRF_BACKENDS = ("exact", "pydensecrf", "auto")
_MISSING = ('DenseCRF(backend="pydensecrf") needs the pydensecrf2 package: '
            'pip install "canetlib[crf]" (or pip install pydensecrf2)')


@dataclass(frozen=True)
class DenseCRF:
    """Fully connected CRF with Gaussian edge potentials over two labels (bg, fg).

    Energy ``E(x) = sum_i -log P_i(x_i) + sum_{i<j} [x_i != x_j] k(f_i, f_j)`` with
    ``k = w_a exp(-|p_i-p_j|^2 / 2 a_xy^2 - |I_i-I_j|^2 / 2 a_rgb^2)
    + w_s exp(-|p_i-p_j|^2 / 2 s_xy^2)`` (positions ``p`` in pixels, colours
    ``I`` in 0..255), minimised approximately by ``iterations`` mean-field
    updates started from the network's probabilities.
    """

    iterations: int = 5
    appearance_weight: float = 10.0
    appearance_xy: float = 80.0
    appearance_rgb: float = 13.0
    smoothness_weight: float = 3.0
    smoothness_xy: float = 3.0
    max_side: int = 40
    backend: Literal["exact", "pydensecrf", "auto"] = "exact"

    def __post_init__(self) -> None:
        if self.backend not in CRF_BACKENDS:
            raise ValueError(f"DenseCRF: backend must be one of {CRF_BACKENDS}, "
                             f"got {self.backend!r}")
        if self.backend == "pydensecrf":
            self.resolved_backend()  # a missing package fails here, not mid-evaluation
        if self.iterations < 0 or self.max_side < 2:
            raise ValueError("DenseCRF: need iterations >= 0 and max_side >= 2")
        if min(self.appearance_xy, self.appearance_rgb, self.smoothness_xy) <= 0:
            raise ValueError("DenseCRF: kernel widths must be > 0")

    def settings(self) -> dict[str, Any]:
        """The parameters as a plain dict (for result files), with the backend that runs."""
        return {**asdict(self), "backend": self.resolved_backend()}

    def resolved_backend(self) -> str:
        """``"exact"`` or ``"pydensecrf"``: what ``"auto"`` picks here.

        Raises:
            ImportError: ``backend="pydensecrf"`` without the pydensecrf2 package.
        """
        if self.backend == "exact":
            return "exact"
        if _densecrf_module() is not None:
            return "pydensecrf"
        if self.backend == "pydensecrf":
            raise MissingExtraError(_MISSING)
        return "exact"

    def __call__(self, image: Tensor, probs: Tensor) -> Tensor:
        """Refine ``probs`` ``([1,] 2, H, W)`` (background, foreground) of ``image``.

        ``image``: ``(3, H, W)`` ImageNet-normalised float (as episodes hold
        it) or ``uint8`` RGB. Returns probabilities of ``probs``' shape.

        Raises:
            ValueError: shapes that do not match, or not two labels.
        """
        batched = probs.dim() == 4
        p = probs[0] if batched else probs
        if p.dim() != 3 or p.shape[0] != 2:
            raise ValueError(f"DenseCRF: probs must be (2, H, W) or (1, 2, H, W), "
                             f"got {tuple(probs.shape)}")
        if image.dim() != 3 or image.shape[0] != 3 or image.shape[-2:] != p.shape[-2:]:
            raise ValueError(f"DenseCRF: image {tuple(image.shape)} must be (3, H, W) with the "
                             f"probabilities' size {tuple(p.shape[-2:])}")
        if self.resolved_backend() == "pydensecrf":
            out = self._infer_pydensecrf(_rgb255(image), p.float())
        else:
            out = self._infer(_rgb255(image).to(p.device), p.float())
        out = out.to(device=p.device, dtype=probs.dtype)
        return out[None] if batched else out

    def _infer(self, rgb: Tensor, p: Tensor) -> Tensor:
        height, width = p.shape[-2:]
        scale = max(height, width) / self.max_side
        if scale > 1:
            h, w = max(1, round(height / scale)), max(1, round(width / scale))
            rgb = F.interpolate(rgb[None], size=(h, w), mode="area")[0]
            small = F.interpolate(p[None], size=(h, w), mode="area")[0]
        else:
            h, w, small = height, width, p
        sy, sx = height / h, width / w  # image pixels per grid cell
        ys = (torch.arange(h, device=p.device, dtype=torch.float32) + 0.5) * sy
        xs = (torch.arange(w, device=p.device, dtype=torch.float32) + 0.5) * sx
        pos = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)
        colour = rgb.reshape(3, -1).t()
        appearance = _gaussian(torch.cat([pos / self.appearance_xy,
                                          colour / self.appearance_rgb], dim=1))
        smooth = _gaussian(pos / self.smoothness_xy)
        message = (self.appearance_weight * _normalised(appearance)
                   + self.smoothness_weight * _normalised(smooth))
        unary = small.reshape(2, -1).t().clamp_min(1e-6).log()
        q = small.reshape(2, -1).t()
        for _ in range(self.iterations):
            # Potts: the energy of label l falls with the kernel mass of l around
            q = torch.softmax(unary + message @ q, dim=1)
        refined = q.t().reshape(2, h, w)
        if (h, w) != (height, width):
            refined = F.interpolate(refined[None], size=(height, width), mode="bilinear",
                                    align_corners=False)[0]
        return refined

    def _infer_pydensecrf(self, rgb: Tensor, p: Tensor) -> Tensor:
        dcrf = _densecrf_module()
        if dcrf is None:
            raise MissingExtraError(_MISSING)
        height, width = p.shape[-2:]
        unary = -np.log(p.detach().cpu().clamp_min(1e-6).numpy().reshape(2, -1))
        image = rgb.detach().cpu().round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
        crf = dcrf.DenseCRF2D(width, height, 2)
        crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
        crf.addPairwiseGaussian(sxy=self.smoothness_xy, compat=self.smoothness_weight)
        crf.addPairwiseBilateral(sxy=self.appearance_xy, srgb=self.appearance_rgb,
                                 rgbim=np.ascontiguousarray(image.numpy()),
                                 compat=self.appearance_weight)
        q = np.asarray(crf.inference(self.iterations), dtype=np.float32)
        return torch.from_numpy(q.reshape(2, height, width).copy())


def _densecrf_module() -> Any:
    """``pydensecrf.densecrf`` (from the pydensecrf2 package), or None when it does not import."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        return None
    return dcrf


def _gaussian(features: Tensor) -> Tensor:
    return torch.exp(-0.5 * torch.cdist(features, features).square())


def _normalised(kernel: Tensor) -> Tensor:
    """``D^-1/2 K D^-1/2`` with ``D = diag(K 1)``, then no message from a pixel to itself.

    The symmetric normalisation is the reference DenseCRF code's default: a
    pixel's messages stay O(1) however many pixels its kernel covers, which also
    makes the result independent of the grid size.
    """
    norm = kernel.sum(dim=1).rsqrt()
    out = kernel * norm[:, None] * norm[None, :]
    out.fill_diagonal_(0.0)
    return out


def _rgb255(image: Tensor) -> Tensor:
    """``(3, H, W)`` normalised float or uint8 -> float RGB in 0..255."""
    if image.dtype == torch.uint8:
        return image.float()
    return denormalise_image(image) * 255.0
