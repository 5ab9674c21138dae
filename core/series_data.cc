// Implements core/series_data.h (being written).
