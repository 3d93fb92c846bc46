//! Internet checksum (RFC 1071), incremental update (RFC 1624) and CRC32c for SCTP (RFC 4960).

/// Adds 16-bit big-endian words of `data` to `acc` without folding.
pub fn sum_words(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a 32-bit accumulator into 16 bits.
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `data`: the complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_words(0, data))
}

/// Sum of an IPv4 or IPv6 pseudo-header for an upper-layer checksum.
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], proto: u8, l4_len: u32) -> u32 {
    let mut acc = sum_words(0, src);
    acc = sum_words(acc, dst);
    acc = acc.wrapping_add(u32::from(proto));
    acc = acc.wrapping_add(l4_len >> 16).wrapping_add(l4_len & 0xffff);
    acc
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word changed from `old` to `new`.
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// Incremental update for a changed run of bytes (even length, aligned to the checksummed words).
#[inline]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let mut acc = u32::from(!csum);
    let mut i = 0;
    while i + 1 < old.len() {
        acc += u32::from(!u16::from_be_bytes([old[i], old[i + 1]]));
        acc += u32::from(u16::from_be_bytes([new[i], new[i + 1]]));
        acc = (acc & 0xffff) + (acc >> 16);
        i += 2;
    }
    !fold(acc)
}

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82f6_3b78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32C: [u32; 256] = crc32c_table();

/// CRC32c (Castagnoli) as SCTP uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_parts(data, &[])
}

/// CRC32c over the concatenation of two slices.
pub fn crc32c_parts(a: &[u8], b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in a.iter().chain(b) {
        c = CRC32C[((c ^ u32::from(x)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example words.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    proptest! {
        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(any::<u8>(), 2..200),
                                   at in 0usize..100, new in any::<[u8; 4]>()) {
            if data.len() % 2 == 1 { data.push(0); }
            let at = (at % data.len()) & !1;
            let end = (at + 4).min(data.len());
            let before = checksum(&data);
            let old = data[at..end].to_vec();
            data[at..end].copy_from_slice(&new[..end - at]);
            let inc = update_bytes(before, &old, &data[at..end]);
            let full = checksum(&data);
            // 0x0000 and 0xffff are the same value in ones' complement arithmetic.
            prop_assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff));
        }
    }
}
