"""Shared builders for the imaging tests and benchmarks: a known asymmetric sky image and
synthetic data on a real Beauty-Contest coverage (values from the exact DFT of the image)."""

from __future__ import annotations

import warnings

import numpy as np

from oiflow.backend import get_xp
from oiflow.image.initial import gaussian, uniform_disk
from oiflow.image.transform import dft
from oiflow.oifits import read_oifits
from oiflow.simulate.synthetic import from_template
from oiflow.units import MAS


def spotted_star(n: int, pixel_mas: float) -> np.ndarray:
    """A 4 mas disk (60 % of the flux) with a bright spot North-East and a fainter one South-West."""
    pix = pixel_mas * MAS
    return (0.6 * uniform_disk(n, pix, 4 * MAS) + 0.25 * gaussian(n, pix, 1.0 * MAS, 3.0 * MAS, 1.5 * MAS)
            + 0.15 * gaussian(n, pix, 1.2 * MAS, -1.5 * MAS, -3.0 * MAS))


def image_visfunc(image: np.ndarray, pixel_mas: float):
    xp = get_xp("numpy")

    def visfunc(u, v, wave):
        shape = np.shape(u)
        return dft(image, pixel_mas * MAS, np.ravel(u), np.ravel(v), xp).reshape(shape) / image.sum()

    return visfunc


def simulate_on(template_path, image: np.ndarray, pixel_mas: float, seed: int = 2, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmpl = read_oifits(template_path, warn=False)
    return from_template(tmpl, image_visfunc(image, pixel_mas), seed=seed, **kw)
