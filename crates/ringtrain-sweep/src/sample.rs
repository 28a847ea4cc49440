//! Randomness of suggestions. Every draw of trial `index` comes from one ChaCha8 stream: the
//! generator seeded with the sweep's seed, on stream number `index`. So trial 7's random values do
//! not depend on how many trials ran before it, at what concurrency, or on which coordinator
//! process: a replay of the sweep draws the same numbers.

use crate::types::{Distribution, ParamValue, Point};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The random stream of trial `index` of a sweep seeded with `seed`.
pub fn trial_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Bounds of a numeric distribution in the domain the algorithms work in: the logarithm for log
/// scales, and for integers widened by half a step on each side so that rounding gives every
/// integer the same share (Optuna's convention).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Numeric {
    pub low: f64,
    pub high: f64,
    pub log: bool,
    /// Integer parameter: values are rounded back to integers.
    pub int: bool,
}

impl Numeric {
    /// `None` for a categorical distribution.
    pub fn of(dist: &Distribution) -> Option<Numeric> {
        match *dist {
            Distribution::Uniform { low, high } => Some(Numeric {
                low,
                high,
                log: false,
                int: false,
            }),
            Distribution::LogUniform { low, high } => Some(Numeric {
                low: low.ln(),
                high: high.ln(),
                log: true,
                int: false,
            }),
            Distribution::Int { low, high, log } => {
                let (low, high) = (low as f64 - 0.5, high as f64 + 0.5);
                Some(if log {
                    Numeric {
                        low: low.ln(),
                        high: high.ln(),
                        log,
                        int: true,
                    }
                } else {
                    Numeric {
                        low,
                        high,
                        log,
                        int: true,
                    }
                })
            }
            Distribution::Choice(_) => None,
        }
    }

    /// A value in the internal domain made into the parameter's value (rounded and clamped to
    /// the declared range for integers).
    pub fn value(self, dist: &Distribution, x: f64) -> ParamValue {
        let x = if self.log { x.exp() } else { x };
        match *dist {
            Distribution::Int { low, high, .. } => {
                ParamValue::Int((x.round() as i64).clamp(low, high))
            }
            Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => {
                ParamValue::Float(x.clamp(low, high))
            }
            Distribution::Choice(_) => ParamValue::Choice(0),
        }
    }

    /// A parameter's value in the internal domain (`None` for a choice index).
    pub fn internal(self, v: &ParamValue) -> Option<f64> {
        let x = match *v {
            ParamValue::Float(x) => x,
            ParamValue::Int(n) => n as f64,
            ParamValue::Choice(_) => return None,
        };
        Some(if self.log { x.ln() } else { x })
    }
}

/// One independent draw from each parameter's distribution (uniform in the internal domain,
/// uniform over choices).
pub fn random_point(dists: &[&Distribution], rng: &mut ChaCha8Rng) -> Point {
    Point(
        dists
            .iter()
            .map(|d| match (Numeric::of(d), d) {
                (Some(n), _) => {
                    let u: f64 = rng.random();
                    n.value(d, n.low + u * (n.high - n.low))
                }
                (None, Distribution::Choice(values)) => {
                    ParamValue::Choice(rng.random_range(0..values.len().max(1)))
                }
                (None, _) => ParamValue::Choice(0),
            })
            .collect(),
    )
}

/// A standard normal draw (Box–Muller; the second value is discarded so a draw always consumes
/// the same amount of the stream).
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    // 1 - u is in (0, 1], so the logarithm is finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
