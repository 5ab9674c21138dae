// Implements core/forecast_eval.h (being written).
