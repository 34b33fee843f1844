//! Noise schedules, computed on the host in f64.
//!
//! Steps run `t = 1..=T` as in Ho et al.: `alpha_bar(0) = 1` is the clean image and
//! `x_t = sqrt(alpha_bar(t)) x_0 + sqrt(1 - alpha_bar(t)) eps`.

use serde::{Deserialize, Serialize};

/// Which betas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Betas evenly spaced from 1e-4 to 0.02 (Ho et al. 2020).
    #[default]
    Linear,
    /// alpha_bar(t) = cos^2(((t / T + s) / (1 + s)) pi / 2), s = 0.008, betas capped at 0.999
    /// (Nichol & Dhariwal 2021).
    Cosine,
}

pub const LINEAR_BETA_START: f64 = 1e-4;
pub const LINEAR_BETA_END: f64 = 0.02;
pub const COSINE_S: f64 = 0.008;
pub const COSINE_MAX_BETA: f64 = 0.999;

/// Betas and cumulative products for `T` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// `betas[t - 1]` is beta_t for t = 1..=T.
    pub betas: Vec<f64>,
    /// `alpha_bar[t]` for t = 0..=T (`alpha_bar[0] = 1`).
    pub alpha_bar: Vec<f64>,
}

impl Schedule {
    pub fn new(kind: ScheduleKind, steps: usize) -> Schedule {
        assert!(steps >= 1, "a schedule has at least one step");
        let t_max = steps as f64;
        let betas: Vec<f64> = match kind {
            ScheduleKind::Linear => (0..steps)
                .map(|i| {
                    let frac = if steps == 1 {
                        0.0
                    } else {
                        i as f64 / (steps - 1) as f64
                    };
                    LINEAR_BETA_START + frac * (LINEAR_BETA_END - LINEAR_BETA_START)
                })
                .collect(),
            ScheduleKind::Cosine => {
                let f = |t: f64| {
                    ((t / t_max + COSINE_S) / (1.0 + COSINE_S) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..steps)
                    .map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(COSINE_MAX_BETA))
                    .collect()
            }
        };
        let mut alpha_bar = Vec::with_capacity(steps + 1);
        alpha_bar.push(1.0);
        for b in &betas {
            let last = alpha_bar[alpha_bar.len() - 1];
            alpha_bar.push(last * (1.0 - b));
        }
        Schedule { betas, alpha_bar }
    }

    /// T.
    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    pub fn beta(&self, t: usize) -> f64 {
        self.betas[t - 1]
    }

    /// One ancestral step t -> t - 1 (t >= 1), written through the predicted clean image:
    /// `x0 = a x_t - b eps` (clipped to [-1, 1]), then `x_{t-1} = c0 x0 + ct x_t + sigma z` with
    /// the posterior q(x_{t-1} | x_t, x0) and its variance ("fixed small"); sigma is 0 at t = 1.
    pub fn ddpm_step(&self, t: usize) -> StepCoefficients {
        let ab = self.alpha_bar[t];
        let ab_prev = self.alpha_bar[t - 1];
        let beta = self.beta(t);
        let alpha = 1.0 - beta;
        StepCoefficients {
            x0_from_xt: 1.0 / ab.sqrt(),
            x0_from_eps: (1.0 / ab - 1.0).sqrt(),
            x0: ab_prev.sqrt() * beta / (1.0 - ab),
            xt: alpha.sqrt() * (1.0 - ab_prev) / (1.0 - ab),
            sigma: if t > 1 {
                (beta * (1.0 - ab_prev) / (1.0 - ab)).sqrt()
            } else {
                0.0
            },
        }
    }

    /// One DDIM step t -> t_prev (Song et al. 2021, eq. 12): `x0` as above, then
    /// `x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps' + sigma z` with `eps'` the
    /// noise implied by the clipped `x0` and `sigma = eta sqrt((1 - ab_prev) / (1 - ab))
    /// sqrt(1 - ab / ab_prev)`.
    pub fn ddim_step(&self, t: usize, t_prev: usize, eta: f64) -> StepCoefficients {
        let ab = self.alpha_bar[t];
        let ab_prev = self.alpha_bar[t_prev];
        let sigma = eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).sqrt();
        // eps' = (x_t - sqrt(ab) x0) / sqrt(1 - ab)
        let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
        let k = dir / (1.0 - ab).sqrt();
        StepCoefficients {
            x0_from_xt: 1.0 / ab.sqrt(),
            x0_from_eps: (1.0 / ab - 1.0).sqrt(),
            x0: ab_prev.sqrt() - k * ab.sqrt(),
            xt: k,
            sigma,
        }
    }

    /// `count` DDIM steps, evenly spaced from T down (the last one reaching t = 0):
    /// pairs (t, t_prev).
    pub fn ddim_steps(&self, count: usize) -> Vec<(usize, usize)> {
        let t_max = self.steps();
        let count = count.clamp(1, t_max);
        let ts: Vec<usize> = (0..count).map(|i| t_max - (i * t_max) / count).collect();
        ts.iter()
            .enumerate()
            .map(|(i, &t)| (t, ts.get(i + 1).copied().unwrap_or(0)))
            .collect()
    }
}

/// `x0 = clip(x0_from_xt x_t - x0_from_eps eps)`; `next = x0 * x0 + xt * x_t + sigma z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    pub x0_from_xt: f64,
    pub x0_from_eps: f64,
    pub x0: f64,
    pub xt: f64,
    pub sigma: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn alpha_bar_decreases_with_known_values() {
        // Reference figures from numpy: cumprod(1 - linspace(1e-4, 0.02, 1000)) and the cosine
        // formula with betas capped at 0.999, in float64.
        for (kind, half, end, first) in [
            (
                ScheduleKind::Linear,
                0.07858724288177824,
                4.035829765375676e-05,
                0.9999,
            ),
            (
                ScheduleKind::Cosine,
                0.4938435904406382,
                2.4287669070348567e-09,
                0.999958715775178,
            ),
        ] {
            let s = Schedule::new(kind, 1000);
            assert_eq!(s.alpha_bar.len(), 1001);
            assert_eq!(s.alpha_bar[0], 1.0);
            assert!(
                close(s.alpha_bar[1], first, 1e-12),
                "{kind:?} {}",
                s.alpha_bar[1]
            );
            assert!(
                close(s.alpha_bar[500], half, 1e-10),
                "{kind:?} {}",
                s.alpha_bar[500]
            );
            assert!(
                close(s.alpha_bar[1000], end, 1e-8),
                "{kind:?} {}",
                s.alpha_bar[1000]
            );
            assert!(s.alpha_bar.windows(2).all(|w| w[1] < w[0]), "{kind:?}");
            assert!(s.betas.iter().all(|&b| b > 0.0 && b <= COSINE_MAX_BETA));
        }
        let s = Schedule::new(ScheduleKind::Linear, 1000);
        assert_eq!(s.beta(1), 1e-4);
        assert!(close(s.beta(1000), 0.02, 1e-14));
    }

    #[test]
    fn ddim_with_all_steps_and_eta_one_is_ddpm_noise() {
        let s = Schedule::new(ScheduleKind::Linear, 1000);
        let steps = s.ddim_steps(50);
        assert_eq!(steps.len(), 50);
        assert_eq!(steps[0], (1000, 980));
        assert_eq!(steps[49], (20, 0));
        // eta = 1 and consecutive steps: DDIM's sigma is the DDPM posterior's.
        for t in [2, 10, 500, 1000] {
            let a = s.ddim_step(t, t - 1, 1.0);
            let b = s.ddpm_step(t);
            assert!(close(a.sigma, b.sigma, 1e-12));
            // Same mean: coefficients of x0 and x_t agree.
            assert!(close(a.x0, b.x0, 1e-9), "{t}: {a:?} {b:?}");
            assert!(close(a.xt, b.xt, 1e-9), "{t}: {a:?} {b:?}");
        }
        // The last DDIM step lands on the clean estimate.
        let last = s.ddim_step(20, 0, 0.0);
        assert!(close(last.x0, 1.0, 1e-12) && last.xt.abs() < 1e-12 && last.sigma == 0.0);
    }
}
