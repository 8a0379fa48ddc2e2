//! Just enough 256-bit unsigned arithmetic for the bucket's exact rate bound:
//! `tokens · period · 2^bits` reaches about 2^200 for a period near `u64::MAX` ns.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct U256([u64; 4]); // little-endian limbs

impl U256 {
    pub(crate) fn from_u128(x: u128) -> Self {
        Self([x as u64, (x >> 64) as u64, 0, 0])
    }

    /// `self · m`; panics on overflow (never happens for the harness's magnitudes).
    pub(crate) fn mul_u64(self, m: u64) -> Self {
        let mut out = [0u64; 4];
        let mut carry: u128 = 0;
        for (i, limb) in self.0.iter().enumerate() {
            let p = *limb as u128 * m as u128 + carry;
            out[i] = p as u64;
            carry = p >> 64;
        }
        assert_eq!(carry, 0, "U256 overflow in the harness");
        Self(out)
    }

    /// `self · 2^s`, s < 64; panics on overflow.
    pub(crate) fn shl(self, s: u32) -> Self {
        assert!(s < 64);
        if s == 0 {
            return self;
        }
        assert_eq!(self.0[3] >> (64 - s), 0, "U256 overflow in the harness");
        let mut out = [0u64; 4];
        for i in (0..4).rev() {
            out[i] = self.0[i] << s;
            if i > 0 {
                out[i] |= self.0[i - 1] >> (64 - s);
            }
        }
        Self(out)
    }

    pub(crate) fn add(self, o: Self) -> Self {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, slot) in out.iter_mut().enumerate() {
            let (s1, c1) = self.0[i].overflowing_add(o.0[i]);
            let (s2, c2) = s1.overflowing_add(carry as u64);
            *slot = s2;
            carry = c1 || c2;
        }
        assert!(!carry, "U256 overflow in the harness");
        Self(out)
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for U256 {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        for i in (0..4).rev() {
            match self.0[i].cmp(&other.0[i]) {
                core::cmp::Ordering::Equal => {}
                o => return o,
            }
        }
        core::cmp::Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::U256;

    #[test]
    fn arithmetic() {
        let a = U256::from_u128(u128::MAX);
        let b = a.mul_u64(u64::MAX).shl(3);
        assert!(b > a);
        assert_eq!(U256::from_u128(3).mul_u64(5).shl(2), U256::from_u128(60));
        assert_eq!(
            U256::from_u128(u64::MAX as u128).add(U256::from_u128(1)),
            U256::from_u128(1 << 64)
        );
        assert!(U256::from_u128(1 << 100).shl(63) > U256::from_u128(u128::MAX));
    }
}
