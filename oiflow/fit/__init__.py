"""Model fitting (LITpro-style): analytic models, fitter, companion search."""
