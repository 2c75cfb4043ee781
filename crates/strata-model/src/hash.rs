/// A hash that never changes between processes, versions or machines (FNV-1a, 64 bit), so that the
/// partition of a source is stable across restarts and across every node of a cluster.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // A separator that cannot occur in a tenant id keeps ("ab","c") apart from ("a","bc").
            h ^= 0xff;
            h = h.wrapping_mul(PRIME);
        }
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// The identity of a series within a tenant as a number: its name, then its other labels
/// (sorted by name, without `__name__`). Equal series get equal fingerprints in every process
/// and version (fingerprints are saved and travel in the log); unequal ones differ but for a
/// 64-bit hash's collisions, which users of it must check for when it matters. It reads eight
/// bytes at a step: it runs for every sample, twice.
pub fn series_fingerprint<'a>(name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = hash_words(0x5354_5241_5441_0001, name.as_bytes());
    for (n, v) in labels {
        h = hash_words(h, n.as_bytes());
        h = hash_words(h, v.as_bytes());
    }
    // A finaliser (splitmix64's) so that every bit of the result depends on every input bit.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A fast hash of a string for in-memory maps that key on it (see `FastHasher`).
pub(crate) fn string_hash(s: &str) -> u64 {
    hash_words(0x5354_5241_5441_0002, s.as_bytes())
}

fn hash_words(mut h: u64, bytes: &[u8]) -> u64 {
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    // The length keeps ("ab", "c") apart from ("a", "bc") and "a" apart from "a\0".
    mix(h, u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56) ^ 0xff)
}

/// A `Hasher` for in-memory maps keyed by short strings or by numbers that are already hashes
/// (fingerprints): a multiply-rotate over eight-byte words, which costs a few cycles on a label
/// value where the standard library's SipHash costs tens of nanoseconds. Not resistant to chosen collisions: use it only where keys
/// are bounded by a limit, as label sets and fingerprints of a tenant are.
#[derive(Debug, Clone, Copy)]
pub struct FastHasher(u64);

impl Default for FastHasher {
    fn default() -> Self {
        FastHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_words(self.0, bytes);
    }

    fn write_u64(&mut self, n: u64) {
        // Fingerprints are hashes already: one multiply spreads them over the table's buckets.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n))
    }
}

/// `HashMap` state for `FastHasher`.
pub type FastHash = std::hash::BuildHasherDefault<FastHasher>;

/// The partition of `(tenant, source_id)` among `partitions`: every record of one source lands in
/// one partition, which keeps that source in order.
pub fn partition_for(tenant: &str, source_id: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (stable_hash(&[tenant.as_bytes(), source_id.as_bytes()]) % u64::from(partitions)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_tell_series_apart() {
        let fp = |name: &str, labels: &[(&str, &str)]| series_fingerprint(name, labels.iter().copied());
        // Saved and logged: this value must never change.
        assert_eq!(fp("up", &[("job", "node")]), 0x3ca3_450a_77cf_7b3a);
        let cases = [
            fp("up", &[]),
            fp("up", &[("job", "node")]),
            fp("up", &[("jo", "bnode")]),
            fp("up", &[("job", "node"), ("a", "")]),
            fp("upj", &[("ob", "node")]),
            fp("up\0", &[]),
            fp("up", &[("job", "node\0")]),
        ];
        let distinct: std::collections::BTreeSet<u64> = cases.iter().copied().collect();
        assert_eq!(distinct.len(), cases.len(), "{cases:x?}");
    }

    #[test]
    fn hash_is_stable_and_separates_parts() {
        // Pinned: changing the hash would move every source to another partition.
        assert_eq!(stable_hash(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
    }

    #[test]
    fn partitions_spread() {
        let mut seen = [0u32; 4];
        for i in 0..1000 {
            seen[partition_for("t", &format!("host-{i}"), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
    }
}
