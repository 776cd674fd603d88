//! Exact and near-duplicate detection.
//!
//! Exact: FNV-1a 64 of the example's text with whitespace runs collapsed.
//! Near: MinHash over word 3-gram shingles (words lower-cased, punctuation
//! dropped), 16 hashes of 16 bits. Two examples are near-duplicates when at
//! least [`NEAR_MATCHES`] of the 16 agree — an estimated Jaccard similarity
//! of about 0.8 or more. Candidates come from locality-sensitive hashing
//! (8 bands of 2 hashes), so only likely pairs are compared.

use std::collections::HashMap;

/// Hashes in a signature.
pub const HASHES: usize = 16;
/// Agreeing hashes (of 16) that make two examples near-duplicates.
pub const NEAR_MATCHES: usize = 13;

/// A MinHash signature.
pub type Signature = [u16; HASHES];

/// Examples shorter than this many words are only checked for exact
/// duplicates: a handful of words says little.
pub const MIN_WORDS_FOR_NEAR: usize = 8;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// The exact-duplicate key: whitespace runs collapsed to one space, trimmed.
pub fn exact_key(text: &str) -> u64 {
    let mut h = FNV_OFFSET;
    let mut pending_space = false;
    for word in text.split_whitespace() {
        if pending_space {
            h = (h ^ u64::from(b' ')).wrapping_mul(FNV_PRIME);
        }
        for b in word.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        pending_space = true;
    }
    h
}

/// SplitMix64: a well-mixed 64-bit hash of a 64-bit value (also the split's PRNG).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The MinHash signature of `text`, or `None` when it is too short to compare.
pub fn signature(text: &str) -> Option<Signature> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() < MIN_WORDS_FOR_NEAR {
        return None;
    }
    let mut sig = [u64::MAX; HASHES];
    for shingle in words.windows(3) {
        let h = fnv1a(shingle.join(" ").as_bytes());
        for (k, min) in sig.iter_mut().enumerate() {
            *min = (*min).min(mix(h ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        }
    }
    Some(sig.map(|v| v as u16))
}

fn matches(a: &Signature, b: &Signature) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

/// Groups of examples that must stay together: exact and near duplicates.
/// `group[i]` is the smallest index in example `i`'s group.
#[derive(Debug, Default)]
pub struct Groups {
    parent: Vec<u32>,
}

impl Groups {
    fn find(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let p = self.parent[i as usize];
            self.parent[i as usize] = self.parent[p as usize];
            i = p;
        }
        i
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[hi as usize] = lo;
    }

    /// The representative (first member) of `i`'s group.
    pub fn of(&mut self, i: u32) -> u32 {
        self.find(i)
    }
}

/// A pair found by [`find`]: `later` repeats `earlier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub earlier: u32,
    pub later: u32,
    pub exact: bool,
}

/// Finds exact and near duplicates among `keys[i] = (exact, signature)`.
/// Returns the groups and, for each repeated example, the pair that tied it
/// to an earlier one (one per later example).
pub fn find(keys: &[(u64, Option<Signature>)]) -> (Groups, Vec<Pair>) {
    let mut groups = Groups {
        parent: (0..keys.len() as u32).collect(),
    };
    let mut pairs = Vec::new();
    let mut first_exact: HashMap<u64, u32> = HashMap::new();
    let mut bands: HashMap<u64, Vec<u32>> = HashMap::new();
    for (i, (exact, sig)) in keys.iter().enumerate() {
        let i = i as u32;
        if let Some(&first) = first_exact.get(exact) {
            groups.union(first, i);
            pairs.push(Pair {
                earlier: first,
                later: i,
                exact: true,
            });
            continue;
        }
        first_exact.insert(*exact, i);
        let Some(sig) = sig else { continue };
        let band_keys: Vec<u64> = (0..HASHES / 2)
            .map(|b| (b as u64) << 32 | u64::from(sig[2 * b]) << 16 | u64::from(sig[2 * b + 1]))
            .collect();
        let mut matched = None;
        'bands: for key in &band_keys {
            if let Some(candidates) = bands.get(key) {
                // Bounded work on degenerate inputs: the most recent 64 suffice.
                for &j in candidates.iter().rev().take(64) {
                    if let Some(other) = &keys[j as usize].1 {
                        if matches(sig, other) >= NEAR_MATCHES {
                            matched = Some(j);
                            break 'bands;
                        }
                    }
                }
            }
        }
        if let Some(j) = matched {
            groups.union(j, i);
            pairs.push(Pair {
                earlier: j,
                later: i,
                exact: false,
            });
        }
        for key in band_keys {
            bands.entry(key).or_default().push(i);
        }
    }
    (groups, pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_does_not_hide_duplicates() {
        assert_eq!(exact_key("Hello   world\n"), exact_key(" Hello world"));
        assert_ne!(exact_key("Hello world"), exact_key("hello world"));
    }

    #[test]
    fn near_duplicates_are_grouped_and_different_texts_are_not() {
        let a = "How do I reset my password if I no longer have access to the email address on my account";
        let b = "How do I reset my password if I no longer have access to the email address on my account?";
        let c = "Which plans include priority support and how much does the upgrade cost per seat each month";
        let keys: Vec<_> = [a, b, c, a]
            .iter()
            .map(|t| (exact_key(t), signature(t)))
            .collect();
        let (mut groups, pairs) = find(&keys);
        assert_eq!(
            pairs,
            vec![
                Pair {
                    earlier: 0,
                    later: 1,
                    exact: false
                },
                Pair {
                    earlier: 0,
                    later: 3,
                    exact: true
                }
            ]
        );
        assert_eq!(groups.of(1), 0);
        assert_eq!(groups.of(2), 2);
    }
}
