//! Timing of `evaluate`'s costly parts on Adult (median of repeated runs, std timing):
//! DCR of 10,000 x 10,000 rows on the host kernel and as flex tensors, and the whole evaluation
//! of 32,561 x 32,561 rows.
//!
//!     cargo bench --bench evaluate
//!
//! Run on an otherwise idle machine.

mod common;

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use synthgen::eval::privacy::{self, Encoded};
use synthgen::eval::{self, EvalOptions};

use common::median;

fn main() {
    synthgen::cli::tune_allocator();
    let adult = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/adult.csv");
    let opts = EvalOptions::new(&adult, &adult);
    let (real, synthetic, _) = eval::read_tables(&opts).expect("bundled adult.csv");
    let p = eval::prepare(&real, &synthetic, None, &opts).expect("adult encodes");

    // Rows 0..10,000 against rows 10,000..20,000.
    let take = |range: std::ops::Range<usize>| -> Vec<eval::Cells> {
        p.real
            .cells
            .iter()
            .map(|c| match c {
                eval::Cells::Num(v) => eval::Cells::Num(v[range.clone()].to_vec()),
                eval::Cells::Cat(v) => eval::Cells::Cat(v[range.clone()].to_vec()),
            })
            .collect()
    };
    let e: Encoded = privacy::encode(&take(0..10_000), &take(10_000..20_000));
    let host = median(
        || drop(privacy::dcr_host(&e.dataset, &e.reference, e.columns)),
        5,
    );
    println!(
        "DCR 10k x 10k, host loop      {:>9.4} s",
        host.as_secs_f64()
    );
    let device = Device::flex();
    let tensor = median(
        || {
            drop(privacy::dcr_tensor(
                &e.dataset,
                &e.reference,
                e.columns,
                &device,
            ))
        },
        3,
    );
    println!(
        "DCR 10k x 10k, flex tensors   {:>9.4} s",
        tensor.as_secs_f64()
    );

    let whole = median(
        || {
            let t0 = Instant::now();
            drop(eval::evaluate_tables(&real, &synthetic, None, &opts, t0).unwrap())
        },
        3,
    );
    println!(
        "evaluate 32,561 x 32,561      {:>9.4} s (in memory, no report files)",
        whole.as_secs_f64()
    );
}
