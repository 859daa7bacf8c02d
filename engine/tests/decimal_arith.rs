//! Decimal arithmetic against i128 arithmetic on scaled integers, and its
//! invariants over the whole 38-digit range.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use proptest::prelude::*;
use raiz_engine::schema::{Decimal, Rounding};

const MODES: [Rounding; 6] = [
    Rounding::HalfUp,
    Rounding::HalfEven,
    Rounding::Down,
    Rounding::Up,
    Rounding::Floor,
    Rounding::Ceiling,
];

fn p10(k: u8) -> i128 {
    10i128.pow(u32::from(k))
}

/// `m` at `scale`, as a mantissa at `to` (≥ scale).
fn at(m: i128, scale: u8, to: u8) -> i128 {
    m * p10(to - scale)
}

/// `num / den` rounded by `mode`, in plain i128.
fn div_round(num: i128, den: i128, mode: Rounding) -> i128 {
    let q = num / den;
    let r = num % den;
    if r == 0 {
        return q;
    }
    let neg = (num < 0) != (den < 0);
    let away = if neg { q - 1 } else { q + 1 };
    let twice = (2 * r.abs()).cmp(&den.abs());
    let up = match mode {
        Rounding::Down => false,
        Rounding::Up => true,
        Rounding::Floor => neg,
        Rounding::Ceiling => !neg,
        Rounding::HalfUp => twice != Ordering::Less,
        Rounding::HalfEven => match twice {
            Ordering::Less => false,
            Ordering::Greater => true,
            Ordering::Equal => q % 2 != 0,
        },
    };
    if up {
        away
    } else {
        q
    }
}

fn hash(d: Decimal) -> u64 {
    let mut h = DefaultHasher::new();
    d.hash(&mut h);
    h.finish()
}

fn small() -> impl Strategy<Value = Decimal> {
    (
        -1_000_000_000_000_000_000i128..=1_000_000_000_000_000_000,
        0u8..=8,
    )
        .prop_map(|(m, s)| Decimal::new(m, s))
}

/// Anything of at most 38 digits and 38 decimals, biased to the edges.
fn big() -> impl Strategy<Value = Decimal> {
    let max = 99_999_999_999_999_999_999_999_999_999_999_999_999i128;
    let mantissa = prop_oneof![
        -max..=max,
        (0u32..=38).prop_map(|k| 10i128.pow(k) - 1),
        (0u32..=37).prop_map(|k| -(10i128.pow(k))),
        -1000i128..=1000,
    ];
    (mantissa, 0u8..=38).prop_map(|(m, s)| Decimal::new(m, s))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matches_scaled_integers(a in small(), b in small(), r in 0u8..=6, mode in 0usize..6) {
        let (ma, sa, mb, sb) = (a.mantissa(), a.scale(), b.mantissa(), b.scale());
        let s = sa.max(sb);

        let sum = a.checked_add(b).unwrap();
        prop_assert_eq!((sum.mantissa(), sum.scale()), (at(ma, sa, s) + at(mb, sb, s), s));
        let diff = a.checked_sub(b).unwrap();
        prop_assert_eq!((diff.mantissa(), diff.scale()), (at(ma, sa, s) - at(mb, sb, s), s));
        let prod = a.checked_mul(b).unwrap();
        prop_assert_eq!((prod.mantissa(), prod.scale()), (ma * mb, sa + sb));

        let ord = at(ma, sa, s).cmp(&at(mb, sb, s));
        prop_assert_eq!(a.cmp(&b), ord);
        prop_assert_eq!(a == b, ord == Ordering::Equal);
        if a == b {
            prop_assert_eq!(hash(a), hash(b));
        }
        // The same number at another scale is equal and hashes alike.
        if let Some(wider) = a.rescale(sa + 3) {
            prop_assert_eq!(wider, a);
            prop_assert_eq!(hash(wider), hash(a));
        }

        let mode = MODES[mode];
        if mb != 0 {
            // a / b × 10^r = ma × 10^(r + sb) / (mb × 10^sa)
            let q = a.checked_div(b, r, mode).unwrap();
            let want = div_round(ma * p10(r + sb), mb * p10(sa), mode);
            prop_assert_eq!((q.mantissa(), q.scale()), (want, r), "{} / {} at {} {:?}", a, b, r, mode);
        } else {
            prop_assert_eq!(a.checked_div(b, r, mode), None);
        }

        let rounded = a.round_with(r, mode);
        if r >= sa {
            prop_assert_eq!((rounded.mantissa(), rounded.scale()), (ma, sa));
        } else {
            let want = div_round(ma, p10(sa - r), mode);
            prop_assert_eq!((rounded.mantissa(), rounded.scale()), (want, r));
        }
        prop_assert_eq!(a.round(r), a.round_with(r, Rounding::HalfUp));
        prop_assert_eq!(a.trunc(r), a.round_with(r, Rounding::Down));
    }

    #[test]
    fn text_and_float_round_trip(a in small()) {
        let text = a.to_string();
        let back: Decimal = text.parse().unwrap();
        prop_assert_eq!((back.mantissa(), back.scale()), (a.mantissa(), a.scale()));
        prop_assert_eq!(format!("{a:?}"), format!("Decimal({text})"));
        // At most 15 significant digits survive an f64 and come back as the
        // shortest decimal, numerically equal.
        if a.mantissa().abs() < 1_000_000_000_000_000 {
            prop_assert_eq!(Decimal::try_from(a.to_f64()).unwrap(), a);
        }
        match i64::try_from(a) {
            Ok(i) => prop_assert_eq!(Decimal::from(i), a),
            Err(_) => prop_assert!(a.rescale(0).is_none()),
        }
    }

    #[test]
    fn whole_range_invariants(a in big(), b in big(), r in 0u8..=38) {
        // Operations either give the exact result or refuse; none panics.
        if let Some(sum) = a.checked_add(b) {
            prop_assert_eq!(Some(sum), b.checked_add(a));
            match sum.checked_sub(b) {
                Some(back) => prop_assert_eq!(back, a),
                // Only when `a` itself has no room at the sum's scale.
                None => prop_assert!(a
                    .rescale(sum.scale())
                    .is_none_or(|x| x.mantissa().unsigned_abs() > 10u128.pow(38) - 1)),
            }
            prop_assert_eq!(sum.scale(), a.scale().max(b.scale()));
        }
        if let Some(prod) = a.checked_mul(b) {
            prop_assert_eq!(Some(prod), b.checked_mul(a));
            if !b.is_zero() {
                prop_assert_eq!(prod.checked_div(b, a.scale(), Rounding::Down), Some(a));
            }
        }
        for mode in MODES {
            let q = a.checked_div(b, r, mode);
            if b.is_zero() {
                prop_assert_eq!(q, None);
            }
            let rounded = a.round_with(r, mode);
            prop_assert!(rounded.scale() <= a.scale());
            // Rounding moves by less than one unit of the last kept decimal.
            let unit = Decimal::new(1, r);
            let gap = rounded.checked_sub(a).and_then(Decimal::checked_abs);
            if let Some(gap) = gap {
                prop_assert!(gap < unit, "{} -> {} ({:?})", a, rounded, mode);
            }
        }
        // Numeric order agrees with subtraction's sign.
        if let Some(diff) = a.checked_sub(b) {
            prop_assert_eq!(a.cmp(&b), diff.signum().cmp(&0));
        }
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        let text = a.to_string();
        prop_assert_eq!(text.parse::<Decimal>().unwrap().to_string(), text);
    }
}
