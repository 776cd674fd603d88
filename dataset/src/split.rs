//! Train/validation/test split: seeded, deterministic, stratified by
//! category, with every duplicate group inside one split.
//!
//! Groups (an example and its exact or near duplicates) are the unit.
//! Within each category, groups are ordered by a seeded hash of their first
//! example's content, then dealt out: each group goes to the split that is
//! furthest below its target share. With no duplicates this hits every
//! target within one example.

use crate::similar::mix;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.jsonl",
            Split::Validation => "validation.jsonl",
            Split::Test => "test.jsonl",
        }
    }
}

/// Percentages for train, validation and test; they add up to 100.
/// Deserialised ratios are checked as [`Ratios::new`] checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "[u32; 3]")]
pub struct Ratios(pub [u32; 3]);

impl TryFrom<[u32; 3]> for Ratios {
    type Error = RatioError;

    fn try_from([train, validation, test]: [u32; 3]) -> Result<Self, Self::Error> {
        Ratios::new(train, validation, test)
    }
}

impl Default for Ratios {
    fn default() -> Self {
        Ratios([80, 10, 10])
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RatioError {
    #[error("write the split as three whole percentages separated by commas, e.g. 80,10,10")]
    Syntax,
    #[error("the three percentages add up to {0}, not 100")]
    Sum(u64),
    #[error("the training share must be above 0")]
    NoTrain,
}

impl std::str::FromStr for Ratios {
    type Err = RatioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<u32> = s
            .split(',')
            .map(|p| p.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| RatioError::Syntax)?;
        let [train, validation, test] = parts[..] else {
            return Err(RatioError::Syntax);
        };
        Ratios::new(train, validation, test)
    }
}

impl Ratios {
    pub fn new(train: u32, validation: u32, test: u32) -> Result<Ratios, RatioError> {
        // In u64: three u32 shares cannot overflow it (in u32 they could
        // wrap around to exactly 100).
        let sum = u64::from(train) + u64::from(validation) + u64::from(test);
        if sum != 100 {
            return Err(RatioError::Sum(sum));
        }
        if train == 0 {
            return Err(RatioError::NoTrain);
        }
        Ok(Ratios([train, validation, test]))
    }
}

/// What the split needs to know of one kept example.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// The first example of its duplicate group (itself if unique).
    pub group: u32,
    /// Index into the category list (0 when there are no categories).
    pub category: u32,
    /// Content hash of the example (order-independent seeding).
    pub key: u64,
}

/// Assigns each item a split. Deterministic in (items, seed, ratios).
pub fn assign(items: &[Item], seed: u64, ratios: Ratios) -> Vec<Split> {
    // group → (category of its first member, sort key, members)
    let mut groups: BTreeMap<u32, (u32, u64, Vec<usize>)> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        let g = groups
            .entry(it.group)
            .or_insert((it.category, 0, Vec::new()));
        if g.2.is_empty() {
            g.1 = mix(seed ^ mix(it.key));
        }
        g.2.push(i);
    }
    let mut by_category: BTreeMap<u32, Vec<(u64, u32, Vec<usize>)>> = BTreeMap::new();
    for (id, (cat, key, members)) in groups {
        by_category.entry(cat).or_default().push((key, id, members));
    }
    let mut out = vec![Split::Train; items.len()];
    for (_, mut groups) in by_category {
        groups.sort_unstable_by_key(|(key, id, _)| (*key, *id));
        let total: usize = groups.iter().map(|g| g.2.len()).sum();
        let targets: Vec<f64> = ratios
            .0
            .iter()
            .map(|r| total as f64 * f64::from(*r) / 100.0)
            .collect();
        let mut filled = [0usize; 3];
        for (_, _, members) in groups {
            // The split furthest below its target (ties: train, validation, test).
            let s = (0..3)
                .filter(|s| ratios.0[*s] > 0)
                .max_by(|a, b| {
                    let da = targets[*a] - filled[*a] as f64;
                    let db = targets[*b] - filled[*b] as f64;
                    da.total_cmp(&db).then(b.cmp(a))
                })
                .unwrap_or(0);
            filled[s] += members.len();
            for m in members {
                out[m] = Split::ALL[s];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unique(n: usize, categories: u32) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                group: i as u32,
                category: i as u32 % categories.max(1),
                key: mix(i as u64),
            })
            .collect()
    }

    fn counts(s: &[Split]) -> [usize; 3] {
        let mut c = [0; 3];
        for x in s {
            c[*x as usize] += 1;
        }
        c
    }

    #[test]
    fn default_split_is_80_10_10() {
        assert_eq!(
            counts(&assign(&unique(1000, 1), 42, Ratios::default())),
            [800, 100, 100]
        );
        assert_eq!("70, 20,10".parse::<Ratios>(), Ok(Ratios([70, 20, 10])));
        assert_eq!("70,20,20".parse::<Ratios>(), Err(RatioError::Sum(110)));
        assert_eq!("70,30".parse::<Ratios>(), Err(RatioError::Syntax));
    }

    /// Shares near `u32::MAX` add up without wrapping around: an error,
    /// never an overflow (a panic in debug builds; in release builds
    /// 4294967295,101,0 wrapped to exactly 100 and was accepted).
    #[test]
    fn huge_shares_are_refused_without_overflow() {
        assert_eq!(
            "4294967295,4294967295,2".parse::<Ratios>(),
            Err(RatioError::Sum(8_589_934_592))
        );
        assert_eq!(
            Ratios::new(u32::MAX, 101, 0),
            Err(RatioError::Sum(4_294_967_396))
        );
        assert_eq!(
            "4294967295,101,0"
                .parse::<Ratios>()
                .map_err(|e| e.to_string()),
            Err("the three percentages add up to 4294967396, not 100".into())
        );
        // Deserialised ratios are checked like parsed ones.
        assert!(serde_json::from_str::<Ratios>("[4294967295, 101, 0]").is_err());
        assert!(serde_json::from_str::<Ratios>("[0, 50, 50]").is_err());
        assert_eq!(
            serde_json::from_str::<Ratios>("[80, 10, 10]").ok(),
            Some(Ratios::default())
        );
    }

    #[test]
    fn stratified_by_category() {
        let items = unique(300, 3);
        let s = assign(&items, 7, Ratios::default());
        for cat in 0..3 {
            let in_cat: Vec<Split> = items
                .iter()
                .zip(&s)
                .filter(|(it, _)| it.category == cat)
                .map(|(_, s)| *s)
                .collect();
            assert_eq!(counts(&in_cat), [80, 10, 10], "category {cat}");
        }
    }

    proptest! {
        #[test]
        fn deterministic_and_within_one_example(n in 1usize..400, seed: u64, train in 1u32..=98, val in 0u32..=50) {
            let val = val.min(100 - train);
            let ratios = Ratios::new(train, val, 100 - train - val).unwrap();
            let items = unique(n, 1);
            let a = assign(&items, seed, ratios);
            prop_assert_eq!(&a, &assign(&items, seed, ratios));
            let c = counts(&a);
            for (s, (count, ratio)) in c.iter().zip(ratios.0).enumerate() {
                let target = n as f64 * f64::from(ratio) / 100.0;
                prop_assert!((*count as f64 - target).abs() <= 1.0, "split {} has {} for target {}", s, count, target);
            }
        }

        #[test]
        fn duplicate_groups_never_cross_splits(n in 2usize..300, seed: u64, group_every in 2usize..6) {
            let items: Vec<Item> = (0..n).map(|i| Item { group: (i - i % group_every) as u32, category: 0, key: mix(i as u64) }).collect();
            let s = assign(&items, seed, Ratios::default());
            for (i, it) in items.iter().enumerate() {
                prop_assert_eq!(s[i], s[it.group as usize]);
            }
        }
    }
}
