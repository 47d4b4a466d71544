//! Deterministic, self-describing message bodies: the body of message `seq` is the 8-byte
//! little-endian `seq` followed by a pseudo-random pattern whose length and bytes are a pure
//! function of `seq`. A reader can therefore tell from the bytes alone which message it holds and
//! whether every byte is intact, without keeping a copy of what was sent.

/// SplitMix64 finaliser: a cheap, well-mixed hash of `x`.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Length of the pattern after the 8-byte seq: mostly 16..1040 bytes, one message in 16 between
/// 4 KiB and 16 KiB (so that small segments roll often and some records are large).
pub fn pattern_len(seq: u64) -> usize {
    let h = mix(seq ^ 0x5EED);
    let v = (h >> 8) as usize;
    if h & 15 == 0 {
        4 * 1024 + v % (12 * 1024)
    } else {
        16 + v % 1024
    }
}

/// The full body of message `seq`.
pub fn body(seq: u64) -> Vec<u8> {
    let n = pattern_len(seq);
    let mut out = Vec::with_capacity(8 + n);
    out.extend_from_slice(&seq.to_le_bytes());
    let mut state = mix(seq);
    while out.len() < 8 + n {
        state = mix(state);
        let take = (8 + n - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    out
}

/// The seq a body claims to be, if it is long enough to hold one.
pub fn claimed_seq(body: &[u8]) -> Option<u64> {
    let head: [u8; 8] = body.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// Checks that `body` is exactly [`body`]`(seq)` for the seq it claims; returns that seq.
///
/// # Errors
/// A description of the mismatch.
pub fn verify(body: &[u8]) -> Result<u64, String> {
    let seq = claimed_seq(body).ok_or_else(|| format!("body of {} bytes", body.len()))?;
    let want = self::body(seq);
    if want.len() != body.len() {
        return Err(format!(
            "seq {seq}: body has {} bytes, expected {}",
            body.len(),
            want.len()
        ));
    }
    match want.iter().zip(body).position(|(a, b)| a != b) {
        Some(i) => Err(format!("seq {seq}: body differs at byte {i}")),
        None => Ok(seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_verify_and_differ() {
        for seq in [0u64, 1, 2, 99, 1 << 40, u64::MAX] {
            let b = body(seq);
            assert_eq!(b.len(), 8 + pattern_len(seq));
            assert_eq!(verify(&b), Ok(seq));
            let mut bad = b.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(verify(&bad).is_err());
        }
        assert_ne!(body(1)[8..], body(2)[8..body(1).len().min(body(2).len())]);
        assert!((0..1000).any(|s| pattern_len(s) > 4 * 1024));
    }
}
