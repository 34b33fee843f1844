//! One Linear layer on the CPU: Burn's flex backend against the host forward pass used for
//! sampling (`models::host`: blocks of 256 rows in parallel, one single-threaded `gemm` call
//! each), at the shapes of CTGAN's generator (500-row training batches, 10,000-row sampling
//! blocks). Median of repeated runs; compare thread counts with `RAYON_NUM_THREADS`:
//!
//!     RAYON_NUM_THREADS=1 cargo bench --bench matmul
//!     RAYON_NUM_THREADS=2 cargo bench --bench matmul
//!
//! Run on an otherwise idle machine.

mod common;

use burn::nn::LinearConfig;
use burn::tensor::{Device, Distribution, Tensor};
use synthgen::models::host::{HostLayer, HostNet, Wiring};

use common::median;

fn main() {
    synthgen::cli::tune_allocator();
    let device = Device::flex();
    println!(
        "{:>20} {:>12} {:>9} {:>12} {:>9} {:>12} {:>9}",
        "rows x in x out", "flex (us)", "GFLOP/s", "4 blocks", "GFLOP/s", "host (us)", "GFLOP/s"
    );
    for (m, k, n) in [
        (500, 128, 256),
        (500, 384, 256),
        (500, 640, 157),
        (10_000, 640, 157),
    ] {
        let linear = LinearConfig::new(k, n).init(&device);
        let x = Tensor::<2>::random([m, k], Distribution::Default, &device);
        let host = HostNet::new(k, Wiring::Sequential, vec![HostLayer::linear(&linear)]);
        let xs: Vec<f32> = x.clone().into_data().try_into_vec().unwrap();
        let runs = if m > 1000 { 21 } else { 201 };
        let flex = median(
            || {
                let _ = linear.forward(x.clone());
            },
            runs,
        );
        // The rows as 4 blocks of a batched product: flex runs the blocks in parallel, each
        // with a single-threaded gemm.
        let w = linear.weight.val().unsqueeze::<3>();
        let blocks = median(
            || {
                let _ = x.clone().reshape([4, m / 4, k]).matmul(w.clone());
            },
            runs,
        );
        let on_host = median(
            || {
                let _ = host.forward(&xs, None);
            },
            runs,
        );
        let gflops = |d: std::time::Duration| 2.0 * (m * k * n) as f64 / d.as_secs_f64() / 1e9;
        println!(
            "{:>20} {:>12.1} {:>9.1} {:>12.1} {:>9.1} {:>12.1} {:>9.1}",
            format!("{m} x {k} x {n}"),
            flex.as_secs_f64() * 1e6,
            gflops(flex),
            blocks.as_secs_f64() * 1e6,
            gflops(blocks),
            on_host.as_secs_f64() * 1e6,
            gflops(on_host)
        );
    }
}
