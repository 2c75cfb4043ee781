//! Unsigned LEB128 varints, as protobuf writes them: the encoding of lengths and counts in
//! Strata's own formats, and the reader of them in remote-write requests.

/// Why no varint could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The bytes end inside the varint.
    Ends,
    /// More than the 10 bytes a `u64` takes.
    TooLong,
}

/// Appends `v`.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint from the front of `b` and moves `b` past it.
pub fn take(b: &mut &[u8]) -> Result<u64, VarintError> {
    // Keys, lengths, counts and symbols are almost always one byte: no loop for those.
    if let Some((&byte, rest)) = b.split_first()
        && byte < 0x80
    {
        *b = rest;
        return Ok(u64::from(byte));
    }
    let mut v = 0u64;
    for i in 0..10 {
        let (&byte, rest) = b.split_first().ok_or(VarintError::Ends)?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(VarintError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn what_is_put_is_taken(values in proptest::collection::vec(any::<u64>(), 0..20)) {
            let mut out = Vec::new();
            for &v in &values {
                put(&mut out, v);
            }
            let mut b = &out[..];
            for &v in &values {
                prop_assert_eq!(take(&mut b), Ok(v));
            }
            prop_assert!(b.is_empty());
        }
    }

    #[test]
    fn short_and_long_varints_are_named() {
        assert_eq!(take(&mut &[0x80u8, 0x80][..]), Err(VarintError::Ends));
        assert_eq!(take(&mut &[][..]), Err(VarintError::Ends));
        assert_eq!(take(&mut &[0xffu8; 11][..]), Err(VarintError::TooLong));
        let mut b = &[0x96u8, 0x01, 7][..];
        assert_eq!((take(&mut b), b), (Ok(150), &[7u8][..]));
    }
}
