#!/usr/bin/env python3
"""Hold-out split and SDMetrics quality scores, to judge synthgen's samples.

    python3 scripts/quality.py split data/adult.csv OUT/          # OUT/train.csv, OUT/holdout.csv
    python3 scripts/quality.py score OUT/holdout.csv synthetic.csv [more.csv ...]

`split` trims cells (as synthgen does when it reads) and keeps 80 % of the rows for training,
chosen with a fixed seed. `score` prints SDMetrics' QualityReport (overall, column shapes,
column pair trends) for each synthetic file against the real one. Column types follow
synthgen's inference: numbers with more than 10 distinct values are numerical, the rest
categorical. Needs `pip install sdmetrics` (MIT).
"""
import csv
import random
import sys


def split(path, out):
    with open(path, newline="") as f:
        sample = f.read(4096)
        f.seek(0)
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        rows = [[c.strip() for c in r] for r in csv.reader(f, dialect)]
    header, body = rows[0], rows[1:]
    random.Random(0).shuffle(body)
    cut = int(len(body) * 0.8)
    for name, part in (("train.csv", body[:cut]), ("holdout.csv", body[cut:])):
        with open(f"{out.rstrip('/')}/{name}", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(part)
    print(f"train {cut} rows, holdout {len(body) - cut} rows")


def metadata(df):
    import pandas as pd

    columns = {}
    for c in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[c])
        if numeric and df[c].nunique() > 10:
            columns[c] = {"sdtype": "numerical"}
        else:
            columns[c] = {"sdtype": "categorical"}
    return {"columns": columns}


def score(real_path, synthetic_paths):
    import pandas as pd
    from sdmetrics.reports.single_table import QualityReport

    real = pd.read_csv(real_path, skipinitialspace=True)
    meta = metadata(real)
    print(f"{'file':40} {'overall':>8} {'shapes':>8} {'trends':>8}")
    for p in synthetic_paths:
        syn = pd.read_csv(p, skipinitialspace=True)
        for c in real.columns:
            if meta["columns"][c]["sdtype"] == "categorical":
                real[c] = real[c].astype(str)
                syn[c] = syn[c].astype(str)
        report = QualityReport()
        report.generate(real, syn, meta, verbose=False)
        props = report.get_properties().set_index("Property")["Score"]
        print(
            f"{p:40} {report.get_score():8.4f} {props['Column Shapes']:8.4f} "
            f"{props['Column Pair Trends']:8.4f}"
        )


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "split":
        split(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "score":
        score(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
