//! Tree-structured Parzen estimator (Bergstra et al. 2011) as Optuna's `TPESampler` runs it with
//! its published defaults: [`STARTUP_TRIALS`] random trials first, then for each parameter
//! independently the finished trials are split into the best `gamma(n)` ("below") and the rest
//! ("above"), a Parzen estimator (a mixture of truncated normals, or of categorical kernels) is
//! fitted to each with Optuna's prior and bandwidth rules, [`EI_CANDIDATES`] candidates are drawn
//! from the "below" estimator and the one maximizing `log l(x) − log g(x)` is suggested.
//! Trials still running enter the "above" group (Optuna's constant liar), so concurrent
//! suggestions spread out instead of piling onto one point.
//!
//! Written here rather than taken from crates.io: the one Rust TPE crate (`tpe` 0.3) is a
//! stateful ask/tell optimizer of one parameter with a fixed gamma, no start-up phase and no
//! constant liar, on rand 0.10 (a second `rand` in the tree); what a sweep needs is a pure
//! function of (seed, trial index, finished trials, pending trials) so a restarted coordinator
//! suggests exactly what the first one would have.

use crate::sample::{Numeric, standard_normal};
use crate::types::{Distribution, ParamValue, Point};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Random trials before the estimator is used (Optuna's `n_startup_trials`).
pub const STARTUP_TRIALS: usize = 10;
/// Candidates drawn from the "below" estimator per suggestion (Optuna's `n_ei_candidates`).
pub const EI_CANDIDATES: usize = 24;
/// Weight of the prior kernel (Optuna's `prior_weight`).
const PRIOR_WEIGHT: f64 = 1.0;

/// Size of the "below" group among `n` observations: `min(ceil(0.1 n), 25)` (Optuna's
/// `default_gamma`).
pub fn gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// Kernel weights of `n` observations in trial order: all 1 below 25, else a ramp from `1/n` to 1
/// over the oldest `n − 25` and 1 for the newest 25 (Optuna's `default_weights`).
pub fn weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            // numpy.linspace(1/n, 1, ramp)
            let start = 1.0 / n as f64;
            if ramp == 1 {
                start
            } else {
                start + (1.0 - start) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

/// One observation for the estimator: a trial's point and its rank key.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// Trial index (kernels are weighted by trial order).
    pub index: u64,
    /// The trial's parameters.
    pub point: &'a Point,
    /// How the trial is ranked.
    pub rank: Rank,
}

/// How an observation is ranked when splitting below / above, best first: completed trials by
/// loss, then pruned trials by how far they got (further first) and their loss there, then
/// running trials (the constant liar: assumed worst).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rank {
    /// A completed trial's final loss (objective turned so that smaller is better).
    Complete(f64),
    /// A pruned trial: epochs it ran and its loss at the last one.
    Pruned {
        /// Epochs completed.
        epochs: u32,
        /// Loss at the last epoch.
        loss: f64,
    },
    /// A trial still running.
    Running,
}

fn rank_key(r: &Rank) -> (u8, i64, f64) {
    // NaN losses sort last within their group.
    let fix = |x: f64| if x.is_nan() { f64::INFINITY } else { x };
    match *r {
        Rank::Complete(loss) => (0, 0, fix(loss)),
        Rank::Pruned { epochs, loss } => (1, -i64::from(epochs), fix(loss)),
        Rank::Running => (2, 0, 0.0),
    }
}

/// Splits observations into (below, above), each in trial order.
fn split<'a>(obs: &[Observation<'a>]) -> (Vec<Observation<'a>>, Vec<Observation<'a>>) {
    let n_below = gamma(obs.len());
    let mut order: Vec<usize> = (0..obs.len()).collect();
    order.sort_by(|&a, &b| {
        let (ka, kb) = (rank_key(&obs[a].rank), rank_key(&obs[b].rank));
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.total_cmp(&kb.2))
            .then(obs[a].index.cmp(&obs[b].index))
    });
    // Running trials are never "below", even when few trials have finished.
    let mut below: Vec<Observation<'a>> = order
        .iter()
        .take(n_below)
        .map(|&i| obs[i].clone())
        .filter(|o| o.rank != Rank::Running)
        .collect();
    let mut above: Vec<Observation<'a>> = order
        .iter()
        .skip(below.len())
        .map(|&i| obs[i].clone())
        .collect();
    below.sort_by_key(|o| o.index);
    above.sort_by_key(|o| o.index);
    (below, above)
}

/// A mixture of truncated normals on `[low, high]` (internal domain).
#[derive(Debug, Clone)]
struct Mixture {
    low: f64,
    high: f64,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    weights: Vec<f64>,
}

impl Mixture {
    /// Optuna's univariate Parzen estimator: one kernel per observation plus the prior
    /// (centre of the range, σ = the range's width), bandwidths from the distance to the
    /// neighbours (sorted, with the range ends as outer neighbours, the outermost kernels using
    /// their inner neighbour only), clipped to [width / min(100, 1 + kernels), width].
    fn fit(xs: &[f64], low: f64, high: f64) -> Mixture {
        let width = high - low;
        let prior_mu = 0.5 * (low + high);
        let n = xs.len();
        let mut sigmas = vec![0.0; n];
        if n > 0 {
            let mut with_prior: Vec<f64> = xs.to_vec();
            with_prior.push(prior_mu);
            let mut order: Vec<usize> = (0..with_prior.len()).collect();
            order.sort_by(|&a, &b| with_prior[a].total_cmp(&with_prior[b]));
            let mut ends = vec![low];
            ends.extend(order.iter().map(|&i| with_prior[i]));
            ends.push(high);
            let m = order.len();
            let mut sorted_sigmas: Vec<f64> = (0..m)
                .map(|j| (ends[j + 1] - ends[j]).max(ends[j + 2] - ends[j + 1]))
                .collect();
            if ends.len() >= 4 {
                sorted_sigmas[0] = ends[2] - ends[1];
                sorted_sigmas[m - 1] = ends[m] - ends[m - 1];
            }
            for (j, &i) in order.iter().enumerate() {
                if i < n {
                    sigmas[i] = sorted_sigmas[j];
                }
            }
        }
        let min_sigma = width / (1.0 + (n + 1) as f64).min(100.0);
        for s in &mut sigmas {
            *s = s.clamp(min_sigma, width);
        }
        let mut mus = xs.to_vec();
        mus.push(prior_mu);
        sigmas.push(width);
        let mut weights = weights(n);
        weights.push(PRIOR_WEIGHT);
        let total: f64 = weights.iter().sum();
        for w in &mut weights {
            *w /= total;
        }
        Mixture {
            low,
            high,
            mus,
            sigmas,
            weights,
        }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        let k = pick(&self.weights, rng);
        let (mu, sigma) = (self.mus[k], self.sigmas[k]);
        // Rejection keeps the draw exactly truncated-normal; μ lies in the range and σ is at most
        // its width, so a draw lands inside with probability above 1/3 and 64 failures in a row
        // are practically impossible (then the clamped draw is used).
        let mut x = mu;
        for _ in 0..64 {
            x = mu + sigma * standard_normal(rng);
            if (self.low..=self.high).contains(&x) {
                return x;
            }
        }
        x.clamp(self.low, self.high)
    }

    /// Log density at `x`, or for integers (`bin` = Some(half width)) the log of the mass of
    /// `[x − bin, x + bin]`.
    fn log_pdf(&self, x: f64, bin: Option<f64>) -> f64 {
        let terms: Vec<f64> = (0..self.mus.len())
            .map(|k| {
                let (mu, s) = (self.mus[k], self.sigmas[k]);
                let z = norm_cdf((self.high - mu) / s) - norm_cdf((self.low - mu) / s);
                let log_p = match bin {
                    None => {
                        -0.5 * ((x - mu) / s).powi(2)
                            - (s * (2.0 * std::f64::consts::PI).sqrt()).ln()
                    }
                    Some(b) => {
                        let lo = (x - b).max(self.low);
                        let hi = (x + b).min(self.high);
                        (norm_cdf((hi - mu) / s) - norm_cdf((lo - mu) / s))
                            .max(1e-300)
                            .ln()
                    }
                };
                self.weights[k].ln() + log_p - z.max(1e-300).ln()
            })
            .collect();
        log_sum_exp(&terms)
    }
}

/// Categorical Parzen estimator: one kernel per observation putting weight 1 on its choice,
/// plus `prior_weight / kernels` on every choice; the kernel rows normalized, mixed with the
/// same kernel weights as numeric parameters (Optuna's rule).
#[derive(Debug, Clone)]
struct Categorical {
    /// Probability of each choice (the mixture already summed over kernels).
    probs: Vec<f64>,
}

impl Categorical {
    fn fit(obs: &[usize], choices: usize) -> Categorical {
        let n = obs.len();
        let kernels = n + 1;
        let mut kw = weights(n);
        kw.push(PRIOR_WEIGHT);
        let total: f64 = kw.iter().sum();
        let mut probs = vec![0.0; choices];
        for k in 0..kernels {
            let fill = PRIOR_WEIGHT / kernels as f64;
            let mut row = vec![fill; choices];
            if k < n && obs[k] < choices {
                row[obs[k]] += 1.0;
            }
            let row_sum: f64 = row.iter().sum();
            for (p, r) in probs.iter_mut().zip(&row) {
                *p += kw[k] / total * r / row_sum;
            }
        }
        Categorical { probs }
    }
}

fn pick(weights: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let u: f64 = rng.random::<f64>() * weights.iter().sum::<f64>();
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if u < acc {
            return i;
        }
    }
    weights.len() - 1
}

fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Standard normal CDF through the complementary error function.
pub(crate) fn norm_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function with fractional error below 1.2e-7 everywhere (Numerical
/// Recipes' Chebyshev fit `erfcc`), enough for ranking candidates.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// TPE's suggestion for one trial, given the finished and running trials as observations, with
/// `rng` the trial's stream; `None` during the start-up phase (fewer than [`STARTUP_TRIALS`]
/// completed or pruned trials), when the caller draws at random.
pub fn suggest(
    dists: &[&Distribution],
    obs: &[Observation<'_>],
    rng: &mut ChaCha8Rng,
) -> Option<Point> {
    let finished = obs.iter().filter(|o| o.rank != Rank::Running).count();
    if finished < STARTUP_TRIALS {
        return None;
    }
    let (below, above) = split(obs);
    let values = dists
        .iter()
        .enumerate()
        .map(|(i, dist)| match Numeric::of(dist) {
            Some(num) => {
                let xs = |group: &[Observation<'_>]| -> Vec<f64> {
                    group
                        .iter()
                        .filter_map(|o| o.point.0.get(i).and_then(|v| num.internal(v)))
                        .collect()
                };
                let l = Mixture::fit(&xs(&below), num.low, num.high);
                let g = Mixture::fit(&xs(&above), num.low, num.high);
                // Integers on a linear scale are scored by the mass of their bin.
                let bin = (num.int && !num.log).then_some(0.5);
                let mut best: Option<(f64, ParamValue)> = None;
                for _ in 0..EI_CANDIDATES {
                    let x = l.sample(rng);
                    let v = num.value(dist, x);
                    // Scored where the value actually lands (rounded, clamped).
                    let x = num.internal(&v).unwrap_or(x);
                    let score = l.log_pdf(x, bin) - g.log_pdf(x, bin);
                    if best.is_none_or(|(s, _)| score > s) {
                        best = Some((score, v));
                    }
                }
                best.map_or(ParamValue::Float(num.low), |(_, v)| v)
            }
            None => {
                let choices = match dist {
                    Distribution::Choice(values) => values.len(),
                    _ => 1,
                };
                let idx = |group: &[Observation<'_>]| -> Vec<usize> {
                    group
                        .iter()
                        .filter_map(|o| match o.point.0.get(i) {
                            Some(ParamValue::Choice(c)) => Some(*c),
                            _ => None,
                        })
                        .collect()
                };
                let l = Categorical::fit(&idx(&below), choices);
                let g = Categorical::fit(&idx(&above), choices);
                let mut best = (f64::NEG_INFINITY, 0);
                for _ in 0..EI_CANDIDATES {
                    let c = pick(&l.probs, rng);
                    let score = l.probs[c].ln() - g.probs[c].ln();
                    if score > best.0 {
                        best = (score, c);
                    }
                }
                ParamValue::Choice(best.1)
            }
        })
        .collect();
    Some(Point(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optuna_defaults() {
        assert_eq!(gamma(1), 1);
        assert_eq!(gamma(10), 1);
        assert_eq!(gamma(11), 2);
        assert_eq!(gamma(300), 25);
        assert_eq!(weights(3), vec![1.0; 3]);
        let w = weights(27);
        assert_eq!(w.len(), 27);
        assert!((w[0] - 1.0 / 27.0).abs() < 1e-12 && (w[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122),
            (1.0, 0.157_299_207),
            (2.0, 0.004_677_735),
            (-1.0, 1.842_700_793),
        ] {
            assert!(
                (erfc(x) - want).abs() < 1e-6 * want.max(1e-3),
                "erfc({x}) = {}",
                erfc(x)
            );
        }
        assert!((norm_cdf(1.96) - 0.975).abs() < 1e-4);
    }

    #[test]
    fn bandwidths_follow_the_neighbour_rule() {
        // Observations 0.2 and 0.9 on [0, 1], prior at 0.5: sorted [0.2, 0.5, 0.9] with ends
        // [0, .2, .5, .9, 1]; the outer kernels take their inner neighbour's distance.
        let m = Mixture::fit(&[0.9, 0.2], 0.0, 1.0);
        assert_eq!(m.mus, vec![0.9, 0.2, 0.5]);
        assert!((m.sigmas[1] - 0.3).abs() < 1e-12, "{:?}", m.sigmas);
        assert!((m.sigmas[0] - 0.4).abs() < 1e-12, "{:?}", m.sigmas);
        assert!((m.sigmas[2] - 1.0).abs() < 1e-12);
        assert!((m.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Clipped below at width / min(100, 1 + kernels).
        let m = Mixture::fit(&[0.5, 0.5, 0.5], 0.0, 1.0);
        assert!(
            m.sigmas[..3].iter().all(|s| (*s - 0.2).abs() < 1e-12),
            "{:?}",
            m.sigmas
        );
    }

    #[test]
    fn the_truncated_mixture_is_a_density() {
        let m = Mixture::fit(&[0.1, 0.15, 0.8], 0.0, 1.0);
        let n = 20_000;
        let integral: f64 = (0..n)
            .map(|i| m.log_pdf((i as f64 + 0.5) / n as f64, None).exp() / n as f64)
            .sum();
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
    }

    #[test]
    fn categorical_rows_follow_optuna() {
        // One observation of choice 1 among 3: kernel rows [1/2, 3/2, 1/2]/2.5 and the prior's
        // [1/3, 1/3, 1/3], mixed with weights 1/2 each.
        let c = Categorical::fit(&[1], 3);
        let want = [
            0.5 * 0.2 + 0.5 / 3.0,
            0.5 * 0.6 + 0.5 / 3.0,
            0.5 * 0.2 + 0.5 / 3.0,
        ];
        for (p, w) in c.probs.iter().zip(want) {
            assert!((p - w).abs() < 1e-12, "{:?}", c.probs);
        }
    }
}
