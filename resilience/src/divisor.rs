//! Division by a divisor fixed at construction, without a `div`
//! instruction: the breaker's windows and the retry budget divide the clock
//! by their bucket length and the epoch by their bucket count on every call.

/// Division by a constant through a precomputed reciprocal: a multiply, a
/// subtract and one correction instead of a 64-bit `div` (tens of cycles,
/// twice per recorded call in a time window: the epoch and its bucket).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Divisor {
    d: u64,
    /// `floor(2^64 / d)`, saturated for `d = 1`.
    m: u64,
}

impl Divisor {
    pub(crate) fn new(d: u64) -> Divisor {
        let d = d.max(1);
        Divisor {
            d,
            m: u64::try_from((1u128 << 64) / u128::from(d)).unwrap_or(u64::MAX),
        }
    }

    /// `(n / d, n % d)`, exact: the estimate `n·m / 2^64` is the quotient
    /// or one less (the reciprocal is short by under one part in 2^64 per
    /// unit of `n`), and the remainder says which.
    #[inline]
    pub(crate) fn div_rem(self, n: u64) -> (u64, u64) {
        let q = ((u128::from(n) * u128::from(self.m)) >> 64) as u64;
        let r = n - q * self.d;
        if r >= self.d {
            (q + 1, r - self.d)
        } else {
            (q, r)
        }
    }

    /// The divisor.
    #[inline]
    pub(crate) fn divisor(self) -> u64 {
        self.d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reciprocal_divides_exactly() {
        for d in [
            1,
            2,
            3,
            7,
            10,
            1_000_000,
            16_666_667,
            1 << 40,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let div = Divisor::new(d);
            for n in [
                0,
                1,
                d - 1,
                d,
                d.saturating_add(1),
                2 * d.min(u64::MAX / 2),
                123_456_789_012_345,
                u64::MAX - 1,
                u64::MAX,
            ] {
                assert_eq!(div.div_rem(n), (n / d, n % d), "{n} / {d}");
            }
        }
    }
}
