//! Seeded bootstrap intervals over test examples. A metric is a ratio of
//! per-example sums, `Σ num / Σ den` (a mean: `num` the score, `den` 1 for
//! the examples it is defined on; the loss: `num` the answer's summed
//! cross-entropy, `den` its token count). Each resample draws the examples
//! with replacement (SplitMix64 from the seed, the same on every machine)
//! and recomputes every metric of both models on the same draw, so the
//! tuned − base difference's interval is paired. The engine's evaluation
//! report and the server's blind-rating win rates both use it.

use crate::evaluation::Interval;

/// SplitMix64: a seeded stream with no global state, the same on every
/// machine (the engine's sampling and the bootstrap draw from it).
pub struct Rng(pub u64);

impl Rng {
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        let z = mix(self.0);
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's output function (the dataset crate's `similar::mix`).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Per-example numerators and denominators of one metric for one model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub num: Vec<f64>,
    pub den: Vec<f64>,
}

impl Series {
    /// A mean over the examples where `x` is defined.
    pub fn mean(x: impl IntoIterator<Item = Option<f64>>) -> Series {
        let (num, den) = x
            .into_iter()
            .map(|v| v.map_or((0.0, 0.0), |v| (v, 1.0)))
            .unzip();
        Series { num, den }
    }

    /// Examples it is defined on.
    pub fn examples(&self) -> usize {
        self.den.iter().filter(|d| **d > 0.0).count()
    }

    fn value(&self, weights: Option<&[f64]>) -> Option<f64> {
        let (mut n, mut d) = (0.0, 0.0);
        for i in 0..self.num.len() {
            let w = weights.map_or(1.0, |w| w[i]);
            n += w * self.num[i];
            d += w * self.den[i];
        }
        (d > 0.0).then(|| n / d)
    }
}

/// How a metric's value follows from its ratio (perplexity: `exp`).
pub type Transform = fn(f64) -> f64;

pub fn identity(x: f64) -> f64 {
    x
}

/// One metric to put an interval on: the tuned model's series, the base
/// model's when there is one.
pub struct Task<'a> {
    pub tuned: &'a Series,
    pub base: Option<&'a Series>,
    pub transform: Transform,
}

/// Intervals for one task: tuned, base, tuned − base.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Intervals {
    pub tuned: Interval,
    pub base: Option<Interval>,
    pub difference: Option<Interval>,
}

/// The `q`-quantile of sorted values (linear interpolation, R's type 7).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

fn interval(value: f64, mut stats: Vec<f64>) -> Interval {
    stats.retain(|s| s.is_finite());
    if stats.is_empty() {
        return Interval {
            value,
            low: value,
            high: value,
        };
    }
    stats.sort_by(f64::total_cmp);
    Interval {
        value,
        low: quantile(&stats, 0.025),
        high: quantile(&stats, 0.975),
    }
}

/// 95 % percentile intervals for every task from `resamples` draws of `n`
/// examples seeded by `seed`; `None` for a task with no example.
pub fn intervals(n: usize, tasks: &[Task], resamples: u32, seed: u64) -> Vec<Option<Intervals>> {
    let mut stats: Vec<[Vec<f64>; 3]> = tasks.iter().map(|_| Default::default()).collect();
    let mut weights = vec![0.0; n];
    if n > 0 {
        let mut rng = Rng(seed);
        for _ in 0..resamples {
            weights.iter_mut().for_each(|w| *w = 0.0);
            for _ in 0..n {
                let i = ((rng.uniform() * n as f64) as usize).min(n - 1);
                weights[i] += 1.0;
            }
            for (t, s) in tasks.iter().zip(&mut stats) {
                let tuned = t.tuned.value(Some(&weights)).map(t.transform);
                let base = t
                    .base
                    .and_then(|b| b.value(Some(&weights)))
                    .map(t.transform);
                if let Some(v) = tuned {
                    s[0].push(v);
                }
                if let Some(v) = base {
                    s[1].push(v);
                }
                if let (Some(a), Some(b)) = (tuned, base) {
                    s[2].push(a - b);
                }
            }
        }
    }
    tasks
        .iter()
        .zip(stats)
        .map(|(t, [st, sb, sd])| {
            let tuned = t.tuned.value(None).map(t.transform)?;
            let base = t.base.and_then(|b| b.value(None)).map(t.transform);
            Some(Intervals {
                tuned: interval(tuned, st),
                base: base.map(|b| interval(b, sb)),
                difference: base.map(|b| interval(tuned - b, sd)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_deterministic_for_a_seed_and_contain_the_value() {
        let tuned = Series::mean((0..40).map(|i| Some(f64::from(u8::from(i % 3 != 0)))));
        let base = Series::mean((0..40).map(|i| Some(f64::from(u8::from(i % 2 == 0)))));
        let task = || Task {
            tuned: &tuned,
            base: Some(&base),
            transform: identity,
        };
        let a = intervals(40, &[task()], 1000, 7);
        let b = intervals(40, &[task()], 1000, 7);
        assert_eq!(a, b);
        let c = intervals(40, &[task()], 1000, 8);
        assert_ne!(a, c, "another seed, other resamples");
        let i = a[0].unwrap();
        assert!((i.tuned.value - 26.0 / 40.0).abs() < 1e-12);
        assert!((i.base.unwrap().value - 0.5).abs() < 1e-12);
        for iv in [i.tuned, i.base.unwrap(), i.difference.unwrap()] {
            assert!(iv.low <= iv.value && iv.value <= iv.high, "{iv:?}");
            assert!(
                iv.high - iv.low > 0.05,
                "{iv:?}: too narrow for 40 examples"
            );
        }
    }

    #[test]
    fn a_constant_metric_has_a_zero_width_interval_and_an_empty_one_none() {
        let ones = Series::mean((0..10).map(|_| Some(1.0)));
        let none = Series::mean((0..10).map(|_| None));
        let got = intervals(
            10,
            &[
                Task {
                    tuned: &ones,
                    base: None,
                    transform: identity,
                },
                Task {
                    tuned: &none,
                    base: None,
                    transform: identity,
                },
            ],
            200,
            1,
        );
        let i = got[0].unwrap().tuned;
        assert_eq!((i.value, i.low, i.high), (1.0, 1.0, 1.0));
        assert!(got[1].is_none());
    }

    #[test]
    fn a_ratio_metric_weights_examples_by_their_denominators() {
        // 3 nats on 1 token and 3 on 3 tokens: 1.5 nats a token (not the
        // mean of 3 and 1).
        let loss = Series {
            num: vec![3.0, 3.0],
            den: vec![1.0, 3.0],
        };
        let got = intervals(
            2,
            &[Task {
                tuned: &loss,
                base: None,
                transform: f64::exp,
            }],
            100,
            3,
        );
        assert!((got[0].unwrap().tuned.value - 1.5f64.exp()).abs() < 1e-12);
    }
}
