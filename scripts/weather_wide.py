# Pivots vega-datasets 3.2.1 data/weather.csv (long: location,date,...) into the wide CSV
# data/series/weather.csv: one row per day, one column per (city, variable). See data/README.md.
# Usage: python3 scripts/weather_wide.py node_modules/vega-datasets/data/weather.csv > data/series/weather.csv
import csv, sys
rows = {}
for r in csv.DictReader(open(sys.argv[1])):
    d = rows.setdefault(r["date"], {}); loc = r["location"].replace(" ", "")
    for k in ("precipitation", "temp_max", "temp_min", "wind"): d[f"{loc}_{k}"] = r[k]
cols = [f"{l}_{k}" for l in ("Seattle", "NewYork") for k in ("precipitation", "temp_max", "temp_min", "wind")]
w = csv.writer(sys.stdout, lineterminator="\n"); w.writerow(["date"] + cols)
for date in sorted(rows): w.writerow([date] + [rows[date][c] for c in cols])
