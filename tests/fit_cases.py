"""Data sets of the fit tests built with oiflow's simulator (known truth).

``arcturus_like``: the IOTA Arcturus case of issue 13 (the file itself is not in the corpus).
An H-band, three-channel data set of a 20.33 mas uniform disk — resolved past its first null
(20.4 m) — on baselines up to 38 m: 50 V² rows between 24 and 38 m (the second lobe, where
V² ≤ 0.018), 6 between 8 and 16 m, and 20 closure triangles with legs of 15–35 m, in 20
exposures; V² errors of 3 % plus 1e-4, closure-phase errors of 3°. The simulator computes monochromatic values at
EFF_WAVE, so the channels are declared narrow (R = 300) and the data carry no smearing.
From a start of 5 mas an unsearched fit stops in the local minimum at 13.75 mas (χ²_red ≈ 4100),
from 25 mas at 25.17 ± 0.00003 mas on the edge of a closure-phase jump (not a minimum) — the two
symptoms of the issue (13.69 mas, χ²_red ≈ 7000; 24.954 ± 0.000017 mas).
"""

from __future__ import annotations

import numpy as np

from oiflow.fit.analytic import uniform_disk
from oiflow.oifits.build import t3_table
from oiflow.simulate.synthetic import from_template, synthetic_oifits
from oiflow.units import MAS

ARCTURUS_UD_MAS = 20.33


def arcturus_like(seed: int = 0, diameter: float = ARCTURUS_UD_MAS):
    """The IOTA-like data set of the module docstring (an :class:`~oiflow.oifits.model.OIFits`)."""
    rng = np.random.default_rng(seed)
    wave = np.array([1.55e-6, 1.65e-6, 1.75e-6])
    length = np.concatenate([rng.uniform(24, 38, 50), rng.uniform(8, 16, 6)])
    pa = rng.uniform(0, np.pi, length.size)
    u, v = length * np.sin(pa), length * np.cos(pa)

    def vis(uu, vv, w):
        return uniform_disk(uu, vv, diameter * MAS)

    v2 = np.abs(vis(u[:, None] / wave, v[:, None] / wave, None)) ** 2
    pairs = np.array([(1, 2), (2, 3), (1, 3)])[np.arange(length.size) % 3]  # three telescopes
    mjd = 60000.0 + 0.01 * (np.arange(length.size) % 20)  # 20 exposures (the bootstrap's observations)
    template = synthetic_oifits(vis, u=u, v=v, wavelength=wave, sta_index=pairs, vis2_err=0.03 * v2 + 1e-4,
                                mjd=mjd, noise=False, target="alf_Boo", insname="IONIC", arrname="IOTA")
    a, b, rot = rng.uniform(15, 35, 20), rng.uniform(15, 35, 20), rng.uniform(0, np.pi, 20)
    u1, v1 = a * np.cos(rot), a * np.sin(rot)
    u2, v2_ = -b * np.sin(rot) - u1, b * np.cos(rot) - v1
    template.tables.append(t3_table("IONIC", "IOTA", target_id=1, mjd=mjd[:20], u1=u1, v1=v1, u2=u2, v2=v2_,
                                    sta_index=np.tile([1, 2, 3], (20, 1)), t3phi=np.zeros((20, 3)),
                                    t3phierr=np.full((20, 3), np.deg2rad(3.0))))
    oi = from_template(template, vis, seed=seed)
    for table in oi.tables:
        if "EFF_BAND" in table.columns:
            table.columns["EFF_BAND"] = (table.columns["EFF_WAVE"] / 300.0).astype(np.float32)
    return oi
