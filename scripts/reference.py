#!/usr/bin/env python3
"""Time the Python reference (ctgan 0.12.1 on PyTorch) on a table, for compare-reference.sh.

    python3 scripts/reference.py ctgan|tvae TRAIN.csv EPOCHS OUT_DIR [--cuda]

Prints one JSON line: encoder fit and transform seconds (the reference's DataTransformer, timed
inside the model's fit by wrapping its methods), seconds per epoch (the fit's time less those,
divided by the epochs), seconds to sample 50,000 rows, and peak resident memory. Writes the 50,000 rows to
OUT_DIR/synthetic.csv for the quality score. Discrete columns follow synthgen's inference:
text, and numbers with at most 10 distinct values.
"""
import json
import os
import resource
import sys
import time


def main():
    model, train_path, epochs, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    cuda = "--cuda" in sys.argv[5:]
    import pandas as pd
    import torch
    from ctgan import CTGAN, TVAE
    from ctgan.data_transformer import DataTransformer

    data = pd.read_csv(train_path, skipinitialspace=True)
    discrete = [
        c for c in data.columns
        if not pd.api.types.is_numeric_dtype(data[c]) or data[c].nunique() <= 10
    ]

    spent = {"fit": 0.0, "transform": 0.0}

    def timed(name, method):
        def wrapper(self, *args, **kwargs):
            t = time.perf_counter()
            result = method(self, *args, **kwargs)
            spent[name] += time.perf_counter() - t
            return result
        return wrapper

    # The synthesizers build their own DataTransformer: time its fit and transform in place.
    DataTransformer.fit = timed("fit", DataTransformer.fit)
    DataTransformer.transform = timed("transform", DataTransformer.transform)

    if model == "ctgan":
        synth = CTGAN(epochs=epochs, enable_gpu=cuda)
    else:
        synth = TVAE(epochs=epochs, enable_gpu=cuda)
    t0 = time.perf_counter()
    synth.fit(data, discrete)
    fit = time.perf_counter() - t0
    encoder_fit, transform = spent["fit"], spent["transform"]

    t0 = time.perf_counter()
    rows = synth.sample(50_000)
    sample = time.perf_counter() - t0
    os.makedirs(out, exist_ok=True)
    rows.to_csv(os.path.join(out, "synthetic.csv"), index=False)

    print(json.dumps({
        "model": model,
        "epochs": epochs,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "encoder_fit_s": encoder_fit,
        "transform_s": transform,
        "fit_s": fit,
        "seconds_per_epoch": (fit - encoder_fit - transform) / epochs,
        "sample_50k_s": sample,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
