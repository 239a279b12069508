"""Arrays in, arrays out: statistics, Procrustes, the map and its kernel, the fold, the bound, metrics. Never a path."""
