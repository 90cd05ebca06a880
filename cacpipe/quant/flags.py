def finalise(r, f): return r
def quality_flags(*a, **k): return []
