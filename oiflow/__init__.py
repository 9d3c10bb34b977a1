"""oiflow: optical/infrared long-baseline interferometry from raw frames (L0) to images (L3).

Conventions (one place; every module follows them)
---------------------------------------------------
* Complex visibility, OIFITS sign convention::

      V(u, v) = ∫∫ I(x, y) exp(-2πi (u x + v y)) dx dy

  with x (first sky coordinate) pointing **East** and y pointing **North**, (u, v) in
  wavelengths (baseline / λ), x, y in radians. A source displaced towards East (x > 0)
  therefore gives a phase that *decreases* with u.
* Position angles are measured from North (+y) through East (+x).
* Inside the code: angles in **radians**, lengths (baselines, wavelengths) in **metres**,
  times in MJD (days). Milli-arcseconds and degrees appear only at the edges (model
  descriptions, command-line options, OIFITS phase columns, plots). Use
  :data:`oiflow.units.MAS` to convert (``x_rad = x_mas * MAS``).
* Baseline (i, j) means telescope i → telescope j: (u, v) = (r_j − r_i) / λ projected on the
  sky, the phase of V_ij is φ_i − φ_j for atmospheric pistons. A closure triangle (i, j, k)
  is the product V_ij · V_jk · V_ki, stored in OI_T3 as STA_INDEX = (i, j, k),
  (U1, V1) = baseline ij and (U2, V2) = baseline jk, so that V_ki has (−U1−U2, −V1−V2).
"""

__version__ = "0.1.0"

PROCSOFT = f"oiflow {__version__}"
