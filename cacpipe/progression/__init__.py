"""Calcium progression across a patient's serial studies (docs/progression.md).

Modules: group (studies per patient, by date), register (heart crop, rigid + affine), match (lesions
over time, per-artery change against the repeatability), run (the command as a function), report
(json, csv, html), views (prior and current side by side), columns (cohort.csv progression columns).
"""
