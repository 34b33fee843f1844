#!/usr/bin/env python3
"""Compare `evaluate` with SDMetrics on the same files, measure by measure.

    python3 scripts/compare-sdmetrics.py [--evaluate target/release/evaluate]
    python3 scripts/compare-sdmetrics.py --real R.csv --synthetic S.csv [--holdout H.csv] [--target COL]

The fixture is the one the integration tests use (tests/it/evaluate.rs):
  real      the first 26,048 rows of data/adult.csv (the training part of a positional 80/20 split)
  holdout   the last 6,513 rows of data/adult.csv
  synthetic tests/data/adult-synthetic.csv (2,000 CTGAN rows; see tests/data/README.md)
With --real, the given files are compared instead. The script writes the split into a temporary directory, runs synthgen's `evaluate` on it, runs
SDMetrics (pip install sdmetrics==0.32.0; MIT) with the column types synthgen reports, and prints
both side by side. It exits 1 when a deterministic measure differs by more than 0.005. DCR
baseline protection compares against uniformly random rows, which the two tools draw with
different generators, so its random median is compared with a wider tolerance.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TOLERANCE = 0.005
RANDOM_TOLERANCE = 0.02


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaluate", default=None, help="path of the evaluate binary")
    ap.add_argument("--data", default="data/adult.csv")
    ap.add_argument("--synthetic", default="tests/data/adult-synthetic.csv")
    ap.add_argument("--train-rows", type=int, default=26048)
    ap.add_argument("--real", default=None, help="compare these files instead of the fixture")
    ap.add_argument("--holdout", default=None)
    ap.add_argument("--target", default="income")
    args = ap.parse_args()

    import pandas as pd
    import sdmetrics
    from sdmetrics.reports.single_table import DiagnosticReport, QualityReport
    from sdmetrics.single_table import DCRBaselineProtection, DCROverfittingProtection, NewRowSynthesis

    binary = args.evaluate or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "evaluate"
    )
    tmp = tempfile.mkdtemp(prefix="synthgen-compare-")
    if args.real:
        real_path, holdout_path = args.real, args.holdout
    else:
        full = pd.read_csv(args.data, skipinitialspace=True)
        real_path, holdout_path = os.path.join(tmp, "real.csv"), os.path.join(tmp, "holdout.csv")
        full.iloc[: args.train_rows].to_csv(real_path, index=False)
        full.iloc[args.train_rows :].to_csv(holdout_path, index=False)

    out = os.path.join(tmp, "report")
    command = [binary, "--real", real_path, "--synthetic", args.synthetic, "-o", out, "-q"]
    if holdout_path:
        command += ["--holdout", holdout_path]
        if args.target:
            command += ["--target", args.target]
    t0 = time.time()
    subprocess.run(command, check=True)
    ours_seconds = time.time() - t0
    ours = json.load(open(os.path.join(out, "report.json")))

    real = pd.read_csv(real_path, skipinitialspace=True)
    holdout = pd.read_csv(holdout_path, skipinitialspace=True) if holdout_path else None
    synthetic = pd.read_csv(args.synthetic, skipinitialspace=True)
    meta = {
        "columns": {
            c["name"]: {"sdtype": "numerical" if c["kind"] == "continuous" else "categorical"}
            for c in ours["columns"]
        }
    }

    rows = []

    def add(name, theirs, mine, tol=TOLERANCE):
        rows.append((name, theirs, mine, tol))

    t0 = time.time()
    q = QualityReport()
    q.generate(real, synthetic, meta, verbose=False)
    props = q.get_properties().set_index("Property")["Score"]
    add("quality.score", q.get_score(), ours["quality"]["score"])
    add("quality.column_shapes", props["Column Shapes"], ours["quality"]["column_shapes"])
    add("quality.column_pair_trends", props["Column Pair Trends"], ours["quality"]["column_pair_trends"])
    shapes = q.get_details("Column Shapes").set_index("Column")["Score"]
    for c in ours["quality"]["columns"]:
        add(f"  shape {c['column']}", shapes[c["column"]], c["score"])

    q0 = QualityReport()
    q0.real_correlation_threshold = 0
    q0.real_association_threshold = 0
    q0.generate(real, synthetic, meta, verbose=False)
    props0 = q0.get_properties().set_index("Property")["Score"]
    add("quality.column_pair_trends_unthresholded", props0["Column Pair Trends"],
        ours["quality"]["column_pair_trends_unthresholded"])
    trends = q0.get_details("Column Pair Trends")
    worst = 0.0
    for t in ours["quality"]["pairs"]:
        m = trends[(trends["Column 1"] == t["column_1"]) & (trends["Column 2"] == t["column_2"])]
        theirs = float(m["Score"].iloc[0])
        if t["score"] is not None and theirs == theirs:
            worst = max(worst, abs(theirs - t["score"]))
    add("  largest per-pair difference", 0.0, worst)

    d = DiagnosticReport()
    d.generate(real, synthetic, meta, verbose=False)
    dprops = d.get_properties().set_index("Property")["Score"]
    add("diagnostic.score", d.get_score(), ours["diagnostic"]["score"])
    add("diagnostic.data_validity", dprops["Data Validity"], ours["diagnostic"]["data_validity"])
    add("diagnostic.data_structure", dprops["Data Structure"], ours["diagnostic"]["data_structure"])
    quality_seconds = time.time() - t0

    t0 = time.time()
    pv = ours["privacy"]
    DCRBaselineProtection._seed = 0
    b = DCRBaselineProtection.compute_breakdown(real, synthetic, meta, None)
    add("privacy.dcr_baseline median synthetic", b["median_DCR_to_real_data"]["synthetic_data"],
        pv["dcr_baseline_protection"]["median_dcr_synthetic"])
    add("privacy.dcr_baseline median random", b["median_DCR_to_real_data"]["random_data_baseline"],
        pv["dcr_baseline_protection"]["median_dcr_random"], RANDOM_TOLERANCE)
    add("privacy.dcr_baseline_protection", b["score"], pv["dcr_baseline_protection"]["score"], RANDOM_TOLERANCE)
    if holdout is not None:
        o = DCROverfittingProtection.compute_breakdown(real, synthetic, holdout, meta, None)
        add("privacy.dcr_overfitting_protection", o["score"], pv["dcr_overfitting_protection"]["score"])
        add("  closer to training", o["synthetic_data_percentages"]["closer_to_training"],
            pv["dcr_overfitting_protection"]["closer_to_training"])
    n = NewRowSynthesis.compute_breakdown(real, synthetic, meta)
    add("privacy.new_row_synthesis", n["score"], pv["new_row_synthesis"]["score"])
    privacy_seconds = time.time() - t0

    print(f"SDMetrics {sdmetrics.__version__} against synthgen evaluate ({binary})")
    print(f"real {len(real)} rows, synthetic {len(synthetic)} rows, "
          f"holdout {len(holdout) if holdout is not None else 0} rows")
    print(f"{'measure':44} {'SDMetrics':>10} {'synthgen':>10} {'diff':>8}")
    bad = 0
    for name, theirs, mine, tol in rows:
        diff = abs(float(theirs) - float(mine))
        flag = "" if diff <= tol else "  <-- over tolerance"
        bad += diff > tol
        print(f"{name:44} {float(theirs):10.6f} {float(mine):10.6f} {diff:8.6f}{flag}")
    u = ours.get("utility")
    if u:
        print(f"utility ({u['metric']} of {u['target']}={u.get('positive_class')}): "
              f"synthetic {u['synthetic_score']:.4f}, real {u['real_score']:.4f} (synthgen only)")
    print(f"seconds: synthgen evaluate {ours_seconds:.2f} (whole command); SDMetrics quality+diagnostic "
          f"{quality_seconds:.1f}, privacy {privacy_seconds:.1f}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
