"""Reduction L0 → L1: the native P2VM reducer (plan a night, calibrate the P2VM, reduce each
observation to an OIFITS2 file), the container backends and their runners."""

from .pipeline import ReduceResult, reduce_night, reduce_observation
from .plan import CalibrationSet, NightPlan, Observation, plan_night

__all__ = ["CalibrationSet", "NightPlan", "Observation", "ReduceResult", "plan_night", "reduce_night",
           "reduce_observation"]
