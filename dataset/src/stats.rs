//! Summary statistics of a list of lengths (tokens or characters).

use serde::{Deserialize, Serialize};

/// Length distribution: order statistics and a histogram.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: u64,
    pub min: u32,
    pub max: u32,
    pub mean: f64,
    pub median: u32,
    pub p5: u32,
    pub p95: u32,
    pub histogram: Vec<Bin>,
}

/// Examples with a length in `[from, to)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bin {
    pub from: u32,
    pub to: u32,
    pub count: u64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// "Nice" bin width (1, 2 or 5 × 10^k) so about `bins` bins cover `max`.
fn bin_width(max: u32, bins: u32) -> u32 {
    let raw = (max / bins).max(1);
    let mut unit = 1u32;
    while unit.saturating_mul(10) <= raw {
        unit *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * unit)
        .find(|w| *w >= raw)
        .unwrap_or(raw)
}

impl Distribution {
    pub fn of(mut values: Vec<u32>) -> Distribution {
        if values.is_empty() {
            return Distribution::default();
        }
        values.sort_unstable();
        let n = values.len();
        let max = values[n - 1];
        let width = bin_width(max, 20);
        let mut histogram: Vec<Bin> = (0..=max / width)
            .map(|i| Bin {
                from: i * width,
                to: (i + 1) * width,
                count: 0,
            })
            .collect();
        for v in &values {
            histogram[(v / width) as usize].count += 1;
        }
        Distribution {
            count: n as u64,
            min: values[0],
            max,
            mean: values.iter().map(|v| f64::from(*v)).sum::<f64>() / n as f64,
            median: percentile(&values, 50.0),
            p5: percentile(&values, 5.0),
            p95: percentile(&values, 95.0),
            histogram,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics_and_bins() {
        let d = Distribution::of((1..=100).collect());
        assert_eq!((d.min, d.median, d.p5, d.p95, d.max), (1, 50, 5, 95, 100));
        assert!((d.mean - 50.5).abs() < 1e-9);
        assert_eq!(
            d.histogram[0],
            Bin {
                from: 0,
                to: 5,
                count: 4
            }
        );
        assert_eq!(d.histogram.iter().map(|b| b.count).sum::<u64>(), 100);
        assert_eq!(Distribution::of(vec![]), Distribution::default());
    }
}
