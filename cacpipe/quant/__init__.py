"""Quantification: Agatston, volume, lesions, mass, categories, severity, quality flags, validity.

Modules (import from them directly; this package imports nothing eagerly, so that the study
record can use the lesion model without an import cycle):
- ``agatston``: vectorised per-artery calcium scores (the one Agatston convention);
- ``lesions``: the one lesion model (3D lesions with their Agatston shares);
- ``quantify``: one CT + six-class map -> per-artery numbers and lesions;
- ``categories``: Agatston categories and CAC-DRS; ``severity`` / ``ordinal``: severity grades;
- ``quality``: flags detectable from the image (stents, valve calcium, noise);
- ``validity``: what flags mean for the numbers, applied once (``finalise``).
"""
