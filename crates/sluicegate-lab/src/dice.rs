//! Seeded random draws for the benches' delays and the torture campaigns' choices: small,
//! fast and good enough for that, and repeatable from the seed (not for anything secret).

use std::time::Duration;

/// A small seeded generator (xorshift64*), so a run can be repeated with its seed.
pub struct Dice(u64);

impl Dice {
    /// A generator whose draws depend only on `seed`.
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that small seeds give well-mixed, non-zero states.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)).max(1))
    }

    /// The next draw, uniform over all of `u64`.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `0..=max`.
    pub fn duration_up_to(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.below(max.as_millis() as u64 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_are_repeatable() {
        let (mut a, mut b) = (Dice::new(7), Dice::new(7));
        for _ in 0..10 {
            assert_eq!(a.below(100), b.below(100));
        }
        assert!(Dice::new(1).duration_up_to(Duration::from_millis(5)) <= Duration::from_millis(5));
    }
}
