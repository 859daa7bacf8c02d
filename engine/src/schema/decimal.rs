//! [`Decimal`]: exact decimal numbers of up to 38 digits, and their arithmetic.
//!
//! A decimal is an `i128` mantissa and a scale (digits after the point). The
//! arithmetic is exact and never panics: every operation that could need more
//! than [`Decimal::MAX_DIGITS`] digits or more than [`Decimal::MAX_SCALE`]
//! decimals comes as a `checked_*` method returning `Option` and a `try_*`
//! method returning a [`DecimalError`]. That is why `Decimal` implements no
//! `+`, `-`, `*` or `/` operators: an operator could only panic, wrap or
//! saturate on overflow, and a money total must do none of these.
//!
//! Scales follow the SQL / xBase rules: a sum or difference has the larger
//! scale of its operands, a product the sum of their scales, and a quotient the
//! scale asked for, rounded as asked. Comparisons are numeric: `1.50 == 1.5`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An exact decimal number: `mantissa × 10^-scale`.
///
/// Equality, ordering and hashing are numeric (`1.50 == 1.5`, `1.5 < 2`), while
/// [`Decimal::scale`] and [`Display`](fmt::Display) keep the digits as given:
///
/// ```
/// use raiz_engine::Decimal;
/// let d: Decimal = "-12.50".parse().unwrap();
/// assert_eq!(d.mantissa(), -1250);
/// assert_eq!(d.scale(), 2);
/// assert_eq!(d.to_string(), "-12.50");
/// assert_eq!(d, "-12.5".parse().unwrap());
/// assert!(d < Decimal::from(-12));
/// assert_eq!(format!("{d:?}"), "Decimal(-12.50)");
/// ```
///
/// Arithmetic is exact and checked (see the [module](crate::schema::decimal)):
///
/// ```
/// use raiz_engine::schema::{Decimal, Rounding};
/// let price: Decimal = "19.90".parse()?;
/// let qty: Decimal = "3.5".parse()?;
/// let total = price.try_mul(qty)?;                  // scale 2 + 1
/// assert_eq!(total.to_string(), "69.650");
/// assert_eq!(total.round(2).to_string(), "69.65");
/// let net = total.try_sub("0.65".parse()?)?;        // scale max(3, 2)
/// assert_eq!(net.to_string(), "69.000");
/// let third = net.try_div(Decimal::from(3), 2, Rounding::HalfUp)?;
/// assert_eq!(third.to_string(), "23.00");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct Decimal {
    mantissa: i128,
    scale: u8,
}

/// Why a text is not a decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a decimal number")]
pub struct ParseDecimalError(pub String);

/// Why a decimal operation or conversion has no exact result.
///
/// ```
/// use raiz_engine::schema::{Decimal, DecimalError, Rounding};
/// let e = Decimal::from(1).try_div(Decimal::ZERO, 2, Rounding::HalfUp).unwrap_err();
/// assert!(matches!(e, DecimalError::DivisionByZero { .. }));
/// assert_eq!(e.to_string(), "1 / 0: division by zero");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// The exact result needs more than 38 digits or more than 38 decimals.
    #[error("{lhs} {op} {rhs}: the result needs more than 38 digits or 38 decimals")]
    Overflow {
        /// The operation: `+`, `-`, `*` or `/`.
        op: &'static str,
        /// The left operand.
        lhs: Decimal,
        /// The right operand.
        rhs: Decimal,
    },
    /// A division by zero.
    #[error("{lhs} / 0: division by zero")]
    DivisionByZero {
        /// The dividend.
        lhs: Decimal,
    },
    /// A conversion to an integer type of a number with a fraction.
    #[error("{value} is not a whole number")]
    NotAnInteger {
        /// The number.
        value: Decimal,
    },
    /// A conversion to a type whose range does not hold the number.
    #[error("{value} is outside the range of {target}")]
    OutOfRange {
        /// The number.
        value: Decimal,
        /// The target type, e.g. `i64`.
        target: &'static str,
    },
    /// A float that no decimal of at most 38 digits and 38 decimals holds
    /// exactly (NaN, an infinity, or too many digits).
    #[error("{value} has no exact decimal of at most 38 digits and 38 decimals")]
    NotRepresentable {
        /// The float, printed.
        value: String,
    },
}

/// How a result that has more decimals than asked for is rounded.
///
/// ```
/// use raiz_engine::schema::{Decimal, Rounding};
/// let d: Decimal = "-2.25".parse().unwrap();
/// let r = |mode| d.round_with(1, mode).to_string();
/// assert_eq!(r(Rounding::HalfUp), "-2.3");   // xBase Round(): half away from zero
/// assert_eq!(r(Rounding::HalfEven), "-2.2"); // banker's rounding
/// assert_eq!(r(Rounding::Down), "-2.2");     // toward zero (truncation)
/// assert_eq!(r(Rounding::Up), "-2.3");       // away from zero
/// assert_eq!(r(Rounding::Floor), "-2.3");    // toward negative infinity
/// assert_eq!(r(Rounding::Ceiling), "-2.2");  // toward positive infinity
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Rounding {
    /// Half away from zero: `2.5 → 3`, `-2.5 → -3` (xBase `Round()`).
    #[default]
    HalfUp,
    /// Half to the even neighbour: `2.5 → 2`, `3.5 → 4`.
    HalfEven,
    /// Toward zero (truncation, xBase `Int()` for scale 0).
    Down,
    /// Away from zero.
    Up,
    /// Toward negative infinity.
    Floor,
    /// Toward positive infinity.
    Ceiling,
}

/// `10^38 - 1`, the largest mantissa of 38 digits.
const MAX_MANTISSA: u128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

impl Decimal {
    /// Most digits a decimal may hold.
    pub const MAX_DIGITS: u32 = 38;

    /// Most decimals (digits after the point) a computed decimal may have.
    pub const MAX_SCALE: u8 = 38;

    /// `mantissa × 10^-scale`, unchecked: arithmetic refuses results beyond
    /// [`Decimal::MAX_DIGITS`] and [`Decimal::MAX_SCALE`], and writing a value
    /// checks it against its field.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::new(5111, 2).to_string(), "51.11");
    /// ```
    pub const fn new(mantissa: i128, scale: u8) -> Decimal {
        Decimal { mantissa, scale }
    }

    /// Zero with no decimals.
    pub const ZERO: Decimal = Decimal::new(0, 0);

    /// One with no decimals.
    pub const ONE: Decimal = Decimal::new(1, 0);

    /// The unscaled integer.
    pub fn mantissa(&self) -> i128 {
        self.mantissa
    }

    /// Digits after the decimal point.
    pub fn scale(&self) -> u8 {
        self.scale
    }

    /// The same number with exactly `scale` decimals, if that is exact (no digit
    /// is dropped and nothing overflows).
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// let d: Decimal = "1.50".parse().unwrap();
    /// assert_eq!(d.rescale(4).unwrap().to_string(), "1.5000");
    /// assert_eq!(d.rescale(1).unwrap().to_string(), "1.5");
    /// assert_eq!(d.rescale(0), None); // would drop the 5
    /// ```
    pub fn rescale(&self, scale: u8) -> Option<Decimal> {
        if scale >= self.scale {
            let f = 10i128.checked_pow(u32::from(scale - self.scale))?;
            Some(Decimal::new(self.mantissa.checked_mul(f)?, scale))
        } else {
            let Some(f) = 10i128.checked_pow(u32::from(self.scale - scale)) else {
                // 10^k beyond i128: only zero divides exactly.
                return (self.mantissa == 0).then_some(Decimal::new(0, scale));
            };
            (self.mantissa % f == 0).then(|| Decimal::new(self.mantissa / f, scale))
        }
    }

    /// Digits before the decimal point (at least 1, as in `0.5`).
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::new(-12345, 2).integer_digits(), 3);
    /// assert_eq!(Decimal::new(5, 1).integer_digits(), 1);
    /// ```
    pub fn integer_digits(&self) -> u32 {
        let int = match 10u128.checked_pow(u32::from(self.scale)) {
            Some(f) => self.mantissa.unsigned_abs() / f,
            None => 0,
        };
        if int == 0 {
            1
        } else {
            int.ilog10() + 1
        }
    }

    /// The nearest `f64` (for display and conversions only; correctly rounded).
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::new(1, 1).to_f64(), 0.1);
    /// ```
    pub fn to_f64(&self) -> f64 {
        self.to_string()
            .parse()
            .unwrap_or_else(|_| self.mantissa as f64 / 10f64.powi(i32::from(self.scale)))
    }

    /// True for zero, whatever the scale.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert!(Decimal::new(0, 2).is_zero());
    /// ```
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// True below zero.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert!(Decimal::new(-1, 2).is_negative());
    /// assert!(!Decimal::ZERO.is_negative());
    /// ```
    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// `-1`, `0` or `1`, the sign of the number.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::new(-250, 2).signum(), -1);
    /// assert_eq!(Decimal::new(0, 2).signum(), 0);
    /// ```
    pub fn signum(&self) -> i32 {
        self.mantissa.signum() as i32
    }

    /// The absolute value; `None` only for the mantissa `i128::MIN` (39 digits,
    /// reachable only through [`Decimal::new`]).
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::new(-250, 2).checked_abs(), Some(Decimal::new(250, 2)));
    /// ```
    pub fn checked_abs(self) -> Option<Decimal> {
        Some(Decimal::new(self.mantissa.checked_abs()?, self.scale))
    }

    /// The opposite number; `None` only for the mantissa `i128::MIN` (39
    /// digits, reachable only through [`Decimal::new`]).
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::new(250, 2).checked_neg(), Some(Decimal::new(-250, 2)));
    /// ```
    pub fn checked_neg(self) -> Option<Decimal> {
        Some(Decimal::new(self.mantissa.checked_neg()?, self.scale))
    }

    /// The same number without trailing zero decimals (`1.500` → `1.5`, `2.00` → `2`).
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::new(1500, 3).normalize().to_string(), "1.5");
    /// ```
    pub fn normalize(self) -> Decimal {
        let (mut m, mut s) = (self.mantissa, self.scale);
        if m == 0 {
            return Decimal::ZERO;
        }
        while s > 0 && m % 10 == 0 {
            m /= 10;
            s -= 1;
        }
        Decimal::new(m, s)
    }

    /// `self + rhs` at the larger scale of the two, or `None` past 38 digits
    /// or 38 decimals.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// let a: Decimal = "1.25".parse().unwrap();
    /// assert_eq!(a.checked_add(Decimal::new(5, 1)).unwrap().to_string(), "1.75");
    /// ```
    pub fn checked_add(self, rhs: Decimal) -> Option<Decimal> {
        add_signed(self, rhs, false)
    }

    /// `self - rhs` at the larger scale of the two, or `None` past 38 digits
    /// or 38 decimals.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// let a: Decimal = "1.25".parse().unwrap();
    /// assert_eq!(a.checked_sub(Decimal::from(2)).unwrap().to_string(), "-0.75");
    /// ```
    pub fn checked_sub(self, rhs: Decimal) -> Option<Decimal> {
        add_signed(self, rhs, true)
    }

    /// `self × rhs` at the sum of the scales, or `None` past 38 digits or 38
    /// decimals (round an operand first to stay within them).
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// let a: Decimal = "1.25".parse().unwrap();
    /// assert_eq!(a.checked_mul("-0.5".parse().unwrap()).unwrap().to_string(), "-0.625");
    /// ```
    pub fn checked_mul(self, rhs: Decimal) -> Option<Decimal> {
        let scale = u32::from(self.scale) + u32::from(rhs.scale);
        let mag = Wide::mul(self.mantissa.unsigned_abs(), rhs.mantissa.unsigned_abs());
        finish(
            (self.mantissa < 0) != (rhs.mantissa < 0),
            mag.narrow()?,
            scale,
        )
    }

    /// `self / rhs` with exactly `scale` decimals, rounded by `rounding`; `None`
    /// for a zero divisor or a quotient past 38 digits, or `scale` above 38.
    ///
    /// ```
    /// use raiz_engine::schema::{Decimal, Rounding};
    /// let q = Decimal::from(2).checked_div(Decimal::from(3), 4, Rounding::HalfUp);
    /// assert_eq!(q.unwrap().to_string(), "0.6667");
    /// ```
    pub fn checked_div(self, rhs: Decimal, scale: u8, rounding: Rounding) -> Option<Decimal> {
        if rhs.mantissa == 0 || scale > Decimal::MAX_SCALE {
            return None;
        }
        let neg = (self.mantissa < 0) != (rhs.mantissa < 0);
        let n = self.mantissa.unsigned_abs();
        let d = rhs.mantissa.unsigned_abs();
        // self / rhs × 10^scale = n × 10^(scale + rhs.scale - self.scale) / d
        let e = i32::from(scale) + i32::from(rhs.scale) - i32::from(self.scale);
        let (q, rem) = if e >= 0 {
            div_scaled_up(n, d, e.unsigned_abs())?
        } else {
            div_scaled_down(n, d, e.unsigned_abs())
        };
        finish(
            neg,
            round_quotient(q, rem, neg, rounding)?,
            u32::from(scale),
        )
    }

    /// [`Decimal::checked_add`] with a typed error.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// let big: Decimal = "99999999999999999999999999999999999999".parse().unwrap();
    /// assert!(big.try_add(Decimal::ONE).is_err());
    /// ```
    pub fn try_add(self, rhs: Decimal) -> Result<Decimal, DecimalError> {
        self.checked_add(rhs).ok_or(DecimalError::Overflow {
            op: "+",
            lhs: self,
            rhs,
        })
    }

    /// [`Decimal::checked_sub`] with a typed error.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::from(3).try_sub(Decimal::new(5, 1)).unwrap().to_string(), "2.5");
    /// ```
    pub fn try_sub(self, rhs: Decimal) -> Result<Decimal, DecimalError> {
        self.checked_sub(rhs).ok_or(DecimalError::Overflow {
            op: "-",
            lhs: self,
            rhs,
        })
    }

    /// [`Decimal::checked_mul`] with a typed error.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::new(15, 1).try_mul(Decimal::new(15, 1)).unwrap().to_string(), "2.25");
    /// ```
    pub fn try_mul(self, rhs: Decimal) -> Result<Decimal, DecimalError> {
        self.checked_mul(rhs).ok_or(DecimalError::Overflow {
            op: "*",
            lhs: self,
            rhs,
        })
    }

    /// [`Decimal::checked_div`] with a typed error.
    ///
    /// ```
    /// use raiz_engine::schema::{Decimal, Rounding};
    /// let q = Decimal::from(-7).try_div(Decimal::from(2), 0, Rounding::HalfUp).unwrap();
    /// assert_eq!(q, Decimal::from(-4));
    /// ```
    pub fn try_div(
        self,
        rhs: Decimal,
        scale: u8,
        rounding: Rounding,
    ) -> Result<Decimal, DecimalError> {
        if rhs.mantissa == 0 {
            return Err(DecimalError::DivisionByZero { lhs: self });
        }
        self.checked_div(rhs, scale, rounding)
            .ok_or(DecimalError::Overflow {
                op: "/",
                lhs: self,
                rhs,
            })
    }

    /// Rounds half away from zero to `scale` decimals, as xBase `Round(n, scale)`.
    ///
    /// A number with `scale` decimals or fewer is returned as it is: rounding
    /// never adds digits ([`Decimal::rescale`] pads with zeros). Never fails.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// let d: Decimal = "2.345".parse().unwrap();
    /// assert_eq!(d.round(2).to_string(), "2.35");
    /// assert_eq!("-2.5".parse::<Decimal>().unwrap().round(0).to_string(), "-3");
    /// assert_eq!(Decimal::new(15, 1).round(4).to_string(), "1.5");
    /// ```
    pub fn round(self, scale: u8) -> Decimal {
        self.round_with(scale, Rounding::HalfUp)
    }

    /// Drops the decimals past `scale` (rounds toward zero), as xBase `Int()`
    /// does for `scale` 0. A number with `scale` decimals or fewer is returned
    /// as it is. Never fails.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!("-2.789".parse::<Decimal>().unwrap().trunc(1).to_string(), "-2.7");
    /// ```
    pub fn trunc(self, scale: u8) -> Decimal {
        self.round_with(scale, Rounding::Down)
    }

    /// Rounds to `scale` decimals by `rounding`; a number with `scale`
    /// decimals or fewer is returned as it is. Never fails.
    ///
    /// ```
    /// use raiz_engine::schema::{Decimal, Rounding};
    /// let d: Decimal = "2.25".parse().unwrap();
    /// assert_eq!(d.round_with(1, Rounding::HalfEven).to_string(), "2.2");
    /// ```
    pub fn round_with(self, scale: u8, rounding: Rounding) -> Decimal {
        if scale >= self.scale {
            return self;
        }
        let neg = self.mantissa < 0;
        let (q, rem) = div_scaled_down(
            self.mantissa.unsigned_abs(),
            1,
            u32::from(self.scale - scale),
        );
        // |q| ≤ 2^127 / 10, so one more and its negation fit.
        let q = round_quotient(q, rem, neg, rounding).unwrap_or(q);
        let m = q as i128;
        Decimal::new(if neg { -m } else { m }, scale)
    }
}

/// The end of an operation: a sign, a magnitude and a scale become a decimal
/// within the limits.
fn finish(neg: bool, mag: u128, scale: u32) -> Option<Decimal> {
    if mag > MAX_MANTISSA || scale > u32::from(Decimal::MAX_SCALE) {
        return None;
    }
    let m = mag as i128;
    Some(Decimal::new(if neg { -m } else { m }, scale as u8))
}

fn add_signed(a: Decimal, b: Decimal, negate_b: bool) -> Option<Decimal> {
    let scale = a.scale.max(b.scale);
    if scale > Decimal::MAX_SCALE {
        return None;
    }
    // Both operands at the common scale, exactly, in 256 bits.
    let up = |d: Decimal| -> Option<Wide> {
        let f = 10u128.checked_pow(u32::from(scale - d.scale))?;
        Some(Wide::mul(d.mantissa.unsigned_abs(), f))
    };
    let (x, y) = (up(a)?, up(b)?);
    let (xn, yn) = (a.mantissa < 0, (b.mantissa < 0) != negate_b);
    let (neg, mag) = if xn == yn {
        (xn, x.add(y))
    } else if x >= y {
        (xn, x.sub(y))
    } else {
        (yn, y.sub(x))
    };
    finish(neg, mag.narrow()?, u32::from(scale))
}

/// The remainder of a division, as far as rounding needs it.
#[derive(Debug, Clone, Copy)]
struct Remainder {
    /// Not zero.
    nonzero: bool,
    /// The remainder against half the divisor.
    half: Ordering,
}

/// `n × 10^e / d`, truncated, with its remainder; `None` when the quotient
/// is past 38 digits. `d` is at most 2^127.
fn div_scaled_up(n: u128, d: u128, e: u32) -> Option<(u128, Remainder)> {
    let mut q = n / d;
    let mut r = n % d;
    if q > MAX_MANTISSA {
        return None;
    }
    for _ in 0..e {
        // 10r / d without forming 10r: r < d ≤ 2^127, so acc + r < 2^128.
        let (mut digit, mut acc) = (0u128, 0u128);
        for _ in 0..10 {
            acc += r;
            if acc >= d {
                acc -= d;
                digit += 1;
            }
        }
        r = acc;
        q = q.checked_mul(10)?.checked_add(digit)?;
        if q > MAX_MANTISSA {
            return None;
        }
    }
    Some((
        q,
        Remainder {
            nonzero: r != 0,
            half: r.cmp(&(d - r)),
        },
    ))
}

/// `n / (d × 10^k)`, truncated, with its remainder. Never fails.
fn div_scaled_down(n: u128, d: u128, k: u32) -> (u128, Remainder) {
    let divisor = 10u128.checked_pow(k).and_then(|p| Wide::mul(d, p).narrow());
    match divisor {
        Some(dv) => {
            let r = n % dv;
            (
                n / dv,
                Remainder {
                    nonzero: r != 0,
                    half: r.cmp(&(dv - r)),
                },
            )
        }
        // The divisor is at least 2^128 and a multiple of 5, so it is more
        // than twice n (n ≤ 2^127): the quotient is 0, below a half.
        None => (
            0,
            Remainder {
                nonzero: n != 0,
                half: Ordering::Less,
            },
        ),
    }
}

/// The truncated quotient `q` of a number of sign `neg`, rounded.
fn round_quotient(q: u128, r: Remainder, neg: bool, rounding: Rounding) -> Option<u128> {
    let up = match rounding {
        Rounding::Down => false,
        Rounding::Up => r.nonzero,
        Rounding::Floor => neg && r.nonzero,
        Rounding::Ceiling => !neg && r.nonzero,
        Rounding::HalfUp => r.half != Ordering::Less,
        Rounding::HalfEven => match r.half {
            Ordering::Less => false,
            Ordering::Equal => q % 2 == 1,
            Ordering::Greater => true,
        },
    };
    if up {
        q.checked_add(1)
    } else {
        Some(q)
    }
}

/// An unsigned 256-bit number, as much as exact decimal arithmetic needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Wide {
    hi: u128,
    lo: u128,
}

impl Wide {
    fn mul(a: u128, b: u128) -> Wide {
        const LOW: u128 = u64::MAX as u128;
        let (a1, a0) = (a >> 64, a & LOW);
        let (b1, b0) = (b >> 64, b & LOW);
        let p00 = a0 * b0;
        let (mid, c1) = (a0 * b1).overflowing_add(a1 * b0);
        let (mid, c2) = mid.overflowing_add(p00 >> 64);
        let carries = (u128::from(c1) + u128::from(c2)) << 64;
        Wide {
            hi: a1 * b1 + (mid >> 64) + carries,
            lo: (mid << 64) | (p00 & LOW),
        }
    }

    /// `self + o`; both are below 2^255 here.
    fn add(self, o: Wide) -> Wide {
        let (lo, c) = self.lo.overflowing_add(o.lo);
        Wide {
            hi: self.hi + o.hi + u128::from(c),
            lo,
        }
    }

    /// `self - o`, for `self >= o`.
    fn sub(self, o: Wide) -> Wide {
        let (lo, b) = self.lo.overflowing_sub(o.lo);
        Wide {
            hi: self.hi - o.hi - u128::from(b),
            lo,
        }
    }

    fn narrow(self) -> Option<u128> {
        (self.hi == 0).then_some(self.lo)
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    /// Numeric order, whatever the scales.
    fn cmp(&self, other: &Decimal) -> Ordering {
        if self.scale == other.scale {
            return self.mantissa.cmp(&other.mantissa);
        }
        let sign = self.mantissa.signum().cmp(&other.mantissa.signum());
        if sign != Ordering::Equal || self.mantissa == 0 {
            return sign;
        }
        // Same sign, both non-zero: compare magnitudes at the larger scale.
        let scale = self.scale.max(other.scale);
        // `None`: the factor is past 10^38, so the magnitude is at least
        // 10^39 > 2^128, more than any mantissa at its own scale.
        let at = |d: &Decimal| {
            10u128
                .checked_pow(u32::from(scale - d.scale))
                .map(|f| Wide::mul(d.mantissa.unsigned_abs(), f))
        };
        let mag = match (at(self), at(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            (None, _) => Ordering::Greater,
            (_, None) => Ordering::Less,
        };
        if self.mantissa < 0 {
            mag.reverse()
        } else {
            mag
        }
    }
}

impl Hash for Decimal {
    /// Hashes the normalized number, so equal numbers hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let n = self.normalize();
        n.mantissa.hash(state);
        n.scale.hash(state);
    }
}

impl Default for Decimal {
    fn default() -> Self {
        Decimal::ZERO
    }
}

impl FromStr for Decimal {
    type Err = ParseDecimalError;

    /// Parses `[-+]digits[.digits]` (surrounding blanks allowed), at most 38
    /// significant digits; the scale is the number of digits after the point.
    fn from_str(s: &str) -> Result<Decimal, ParseDecimalError> {
        let err = || ParseDecimalError(s.to_owned());
        let t = s.trim();
        let (neg, digits) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(err());
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let scale = u8::try_from(frac.len()).map_err(|_| err())?;
        if int.trim_start_matches('0').len() + frac.len() > Decimal::MAX_DIGITS as usize {
            return Err(err());
        }
        let mut m: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            m = m
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .ok_or_else(err)?;
        }
        Ok(Decimal::new(if neg { -m } else { m }, scale))
    }
}

impl fmt::Display for Decimal {
    /// The number with all its decimals (`-12.50`); a precision rounds half
    /// away from zero and pads to it (`{:.1}` of `2.25` is `2.3`, `{:.3}` is
    /// `2.250`), and width, fill, alignment, `+` and `0` apply as to integers.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// let d: Decimal = "2.25".parse().unwrap();
    /// assert_eq!(format!("{d:.1}|{d:.3}|{d:>8}|{d:08.1}|{d:+}"), "2.3|2.250|    2.25|000002.3|+2.25");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, pad) = match f.precision() {
            Some(p) => {
                let p = u8::try_from(p).unwrap_or(u8::MAX);
                let r = self.round(p);
                (r, usize::from(p - r.scale))
            }
            None => (*self, 0),
        };
        let digits = d.mantissa.unsigned_abs().to_string();
        let scale = usize::from(d.scale);
        let mut text = String::with_capacity(digits.len() + scale + pad + 2);
        if scale == 0 {
            text.push_str(&digits);
            if pad > 0 {
                text.push('.');
            }
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            text.push_str(int);
            text.push('.');
            text.push_str(frac);
        } else {
            text.push_str("0.");
            text.extend(std::iter::repeat_n('0', scale - digits.len()));
            text.push_str(&digits);
        }
        text.extend(std::iter::repeat_n('0', pad));
        f.pad_integral(d.mantissa >= 0, "", &text)
    }
}

impl fmt::Debug for Decimal {
    /// `Decimal(51.11)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

impl From<i64> for Decimal {
    fn from(v: i64) -> Decimal {
        Decimal::new(i128::from(v), 0)
    }
}

impl From<i32> for Decimal {
    fn from(v: i32) -> Decimal {
        Decimal::new(i128::from(v), 0)
    }
}

impl From<u32> for Decimal {
    fn from(v: u32) -> Decimal {
        Decimal::new(i128::from(v), 0)
    }
}

impl From<u64> for Decimal {
    fn from(v: u64) -> Decimal {
        Decimal::new(i128::from(v), 0)
    }
}

impl TryFrom<f64> for Decimal {
    type Error = DecimalError;

    /// The shortest decimal that reads back as the same `f64` (`0.1` is
    /// `0.1`, not the binary fraction's 55 digits), if it has at most 38
    /// digits and 38 decimals.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(Decimal::try_from(19.9).unwrap().to_string(), "19.9");
    /// assert_eq!(Decimal::try_from(-0.0).unwrap(), Decimal::ZERO);
    /// assert!(Decimal::try_from(f64::NAN).is_err());
    /// assert!(Decimal::try_from(1e300).is_err());
    /// ```
    fn try_from(v: f64) -> Result<Decimal, DecimalError> {
        let text = format!("{v}");
        if !v.is_finite() {
            return Err(DecimalError::NotRepresentable { value: text });
        }
        text.parse::<Decimal>()
            .map(|d| if d.is_zero() { Decimal::ZERO } else { d })
            .map_err(|_| DecimalError::NotRepresentable { value: text })
    }
}

impl TryFrom<Decimal> for i64 {
    type Error = DecimalError;

    /// The number as an `i64`, if it is whole (`2.00` is) and in range.
    ///
    /// ```
    /// use raiz_engine::Decimal;
    /// assert_eq!(i64::try_from(Decimal::new(200, 2)), Ok(2));
    /// assert!(i64::try_from(Decimal::new(250, 2)).is_err());
    /// ```
    fn try_from(d: Decimal) -> Result<i64, DecimalError> {
        let whole = d
            .rescale(0)
            .ok_or(DecimalError::NotAnInteger { value: d })?;
        i64::try_from(whole.mantissa).map_err(|_| DecimalError::OutOfRange {
            value: d,
            target: "i64",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn h(x: Decimal) -> u64 {
        let mut s = DefaultHasher::new();
        x.hash(&mut s);
        s.finish()
    }

    #[test]
    fn parse_and_print() {
        for s in ["0", "1.5", "-0.25", "123456789.01", "-7", "0.000"] {
            assert_eq!(d(s).to_string(), s);
        }
        assert_eq!(d(".5").to_string(), "0.5");
        for bad in ["", "-", "1.2.3", "abc", "1e5", "."] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad}");
        }
        let max = "99999999999999999999999999999999999999";
        assert_eq!(d(max).to_string(), max);
        assert_eq!(d(&format!("-{max}")).to_string(), format!("-{max}"));
        assert!(format!("{max}9").parse::<Decimal>().is_err());
        let tiny = "0.00000000000000000000000000000000000001";
        assert_eq!(d(tiny).to_string(), tiny);
        assert_eq!(format!("{:?}", d("51.11")), "Decimal(51.11)");
        // Unchecked extremes print without panicking.
        assert_eq!(Decimal::new(5, 60).integer_digits(), 1);
        assert!(Decimal::new(5, 60).to_string().ends_with("05"));
        assert_eq!(
            Decimal::new(i128::MIN, 0).to_string(),
            i128::MIN.to_string()
        );
    }

    #[test]
    fn rescale_is_exact_or_refused() {
        let x = d("1.50");
        assert_eq!(x.rescale(1), Some(Decimal::new(15, 1)));
        assert_eq!(x.rescale(4), Some(Decimal::new(15000, 4)));
        assert_eq!(d("1.55").rescale(1), None);
        assert_eq!(Decimal::new(5, 1).integer_digits(), 1);
        assert_eq!(Decimal::new(-12345, 2).integer_digits(), 3);
        assert_eq!(Decimal::new(0, 200).rescale(0), Some(Decimal::ZERO));
        assert_eq!(Decimal::new(1, 200).rescale(0), None);
    }

    #[test]
    fn equality_order_and_hash_are_numeric() {
        assert_eq!(d("1.50"), d("1.5"));
        assert_eq!(h(d("1.50")), h(d("1.5")));
        assert_eq!(d("0.00"), Decimal::ZERO);
        assert_eq!(h(d("-0.00")), h(Decimal::ZERO));
        assert_eq!(d("100"), d("100.000"));
        assert_eq!(h(d("100")), h(d("100.000")));
        assert!(d("1.5") < d("2"));
        assert!(d("-1.5") > d("-2"));
        assert!(d("-0.001") < Decimal::ZERO);
        assert!(d("0.001") > d("-1000"));
        assert_ne!(d("1.51"), d("1.5"));
        // Scales too far apart for 128 bits still compare exactly.
        assert!(Decimal::new(1, 0) > Decimal::new(i128::MAX, 100));
        assert!(Decimal::new(-1, 0) < Decimal::new(-i128::MAX, 100));
        assert_eq!(Decimal::new(0, 0), Decimal::new(0, 255));
        let mut v = [d("2"), d("-1.5"), d("1.50"), d("0.3"), d("-10")];
        v.sort();
        let s: Vec<String> = v.iter().map(Decimal::to_string).collect();
        assert_eq!(s, ["-10", "-1.5", "0.3", "1.50", "2"]);
    }

    #[test]
    fn arithmetic_follows_scale_rules() {
        assert_eq!(d("1.5").checked_add(d("2.25")).unwrap().to_string(), "3.75");
        assert_eq!(d("1.50").checked_add(d("2")).unwrap().to_string(), "3.50");
        assert_eq!(
            d("1.5").checked_sub(d("2.25")).unwrap().to_string(),
            "-0.75"
        );
        assert_eq!(d("-1.5").checked_sub(d("-1.5")).unwrap().to_string(), "0.0");
        assert_eq!(
            d("1.5").checked_mul(d("2.25")).unwrap().to_string(),
            "3.375"
        );
        assert_eq!(d("-1.5").checked_mul(d("0")).unwrap().to_string(), "0.0");
        assert_eq!(d("-1.5").checked_mul(d("-2")).unwrap().to_string(), "3.0");
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        let max = d("99999999999999999999999999999999999999");
        assert_eq!(max.checked_add(Decimal::ONE), None);
        assert_eq!(max.checked_neg().unwrap().checked_sub(Decimal::ONE), None);
        assert_eq!(
            max.checked_sub(Decimal::ONE).unwrap(),
            d("99999999999999999999999999999999999998")
        );
        assert_eq!(max.checked_mul(d("1.0")), None); // 39 digits at scale 1
        assert_eq!(max.checked_mul(Decimal::ONE), Some(max));
        assert_eq!(d("0.5").checked_add(Decimal::new(1, 39)), None);
        assert_eq!(Decimal::new(1, 20).checked_mul(Decimal::new(1, 20)), None);
        // Operands past 128 bits when aligned, result within 38 digits.
        let a = d("18000000000000000000000000000000000000"); // 38 digits
        let b = d("-9999999999999999999999999999999999999.5");
        let sum = format!("8{}.5", "0".repeat(36));
        assert_eq!(a.checked_add(b).unwrap().to_string(), sum);
        assert_eq!(b.checked_add(a).unwrap().to_string(), sum);
        assert_eq!(
            a.checked_sub(b.checked_neg().unwrap()).unwrap().to_string(),
            sum
        );
        let e = max.try_add(Decimal::ONE).unwrap_err();
        assert!(matches!(e, DecimalError::Overflow { op: "+", .. }), "{e}");
        assert!(e.to_string().contains("38 digits"), "{e}");
        assert_eq!(Decimal::new(i128::MIN, 0).checked_neg(), None);
        assert_eq!(Decimal::new(i128::MIN, 0).checked_abs(), None);
        assert_eq!(
            Decimal::new(i128::MIN, 0).checked_add(Decimal::new(i128::MIN, 0)),
            None
        );
    }

    #[test]
    fn rounding() {
        assert_eq!(d("2.345").round(2).to_string(), "2.35");
        assert_eq!(d("2.344").round(2).to_string(), "2.34");
        assert_eq!(d("-2.345").round(2).to_string(), "-2.35");
        assert_eq!(d("0.5").round(0).to_string(), "1");
        assert_eq!(d("-0.5").round(0).to_string(), "-1");
        assert_eq!(d("-0.4").round(0).to_string(), "0");
        assert_eq!(d("9.99").round(1).to_string(), "10.0");
        assert_eq!(d("1.5").round(3).to_string(), "1.5");
        assert_eq!(d("-2.789").trunc(1).to_string(), "-2.7");
        assert_eq!(d("2.5").round_with(0, Rounding::HalfEven).to_string(), "2");
        assert_eq!(d("3.5").round_with(0, Rounding::HalfEven).to_string(), "4");
        assert_eq!(d("-2.1").round_with(0, Rounding::Floor).to_string(), "-3");
        assert_eq!(d("2.1").round_with(0, Rounding::Ceiling).to_string(), "3");
        assert_eq!(d("2.1").round_with(0, Rounding::Up).to_string(), "3");
        let max = d("99999999999999999999999999999999999999");
        assert_eq!(max.round(0), max);
        let nines = d("9999999999999999999999999999999999999.9");
        assert_eq!(
            nines.round(0).to_string(),
            "10000000000000000000000000000000000000"
        );
        // Scales beyond 128 bits of powers of ten.
        assert_eq!(Decimal::new(i128::MAX, 60).round(0), Decimal::ZERO);
        assert_eq!(
            Decimal::new(1, 60).round_with(2, Rounding::Up).to_string(),
            "0.01"
        );
        assert_eq!(Decimal::new(i128::MIN, 1).round(0).signum(), -1);
    }

    #[test]
    fn division() {
        let div = |a: &str, b: &str, s, r| d(a).checked_div(d(b), s, r).map(|x| x.to_string());
        assert_eq!(div("1", "3", 4, Rounding::HalfUp).unwrap(), "0.3333");
        assert_eq!(div("2", "3", 4, Rounding::HalfUp).unwrap(), "0.6667");
        assert_eq!(div("2", "3", 4, Rounding::Down).unwrap(), "0.6666");
        assert_eq!(div("-2", "3", 2, Rounding::HalfUp).unwrap(), "-0.67");
        assert_eq!(div("-2", "3", 2, Rounding::Floor).unwrap(), "-0.67");
        assert_eq!(div("-2", "3", 2, Rounding::Ceiling).unwrap(), "-0.66");
        assert_eq!(div("10.00", "4", 1, Rounding::HalfEven).unwrap(), "2.5");
        assert_eq!(div("10.00", "4", 0, Rounding::HalfEven).unwrap(), "2");
        assert_eq!(div("10.00", "4", 0, Rounding::HalfUp).unwrap(), "3");
        assert_eq!(div("1", "0.001", 2, Rounding::HalfUp).unwrap(), "1000.00");
        assert_eq!(div("0.00001", "1000", 2, Rounding::HalfUp).unwrap(), "0.00");
        assert_eq!(div("0.00001", "1000", 2, Rounding::Up).unwrap(), "0.01");
        assert_eq!(div("1", "0", 2, Rounding::HalfUp), None);
        assert_eq!(div("1", "3", 39, Rounding::HalfUp), None);
        // A dividend of 38 digits and a large divisor: exact, no 128-bit overflow.
        let big = "99999999999999999999999999999999999999";
        assert_eq!(
            div(big, "300", 2, Rounding::Down).unwrap(),
            "333333333333333333333333333333333333.33"
        );
        assert_eq!(div(big, "0.1", 0, Rounding::Down), None);
        assert_eq!(div(big, big, 37, Rounding::Down).unwrap().len(), 39);
        assert_eq!(div(big, big, 38, Rounding::Down), None); // 1 and 38 zeros: 39 digits
        let e = Decimal::ONE
            .try_div(Decimal::new(0, 3), 2, Rounding::HalfUp)
            .unwrap_err();
        assert_eq!(e, DecimalError::DivisionByZero { lhs: Decimal::ONE });
    }

    #[test]
    fn conversions() {
        assert_eq!(Decimal::from(7i32), Decimal::new(7, 0));
        assert_eq!(Decimal::from(u64::MAX).to_string(), u64::MAX.to_string());
        assert_eq!(Decimal::try_from(0.1).unwrap(), d("0.1"));
        assert_eq!(Decimal::try_from(-1234.5678).unwrap(), d("-1234.5678"));
        assert_eq!(Decimal::try_from(1e20).unwrap(), d("100000000000000000000"));
        assert!(Decimal::try_from(f64::INFINITY).is_err());
        assert!(Decimal::try_from(1e-40).is_err());
        assert_eq!(d("0.1").to_f64(), 0.1);
        assert_eq!(d("-1234.5678").to_f64(), -1234.5678);
        assert_eq!(i64::try_from(d("-42.000")), Ok(-42));
        assert!(matches!(
            i64::try_from(d("42.5")),
            Err(DecimalError::NotAnInteger { .. })
        ));
        assert!(matches!(
            i64::try_from(d("9223372036854775808")),
            Err(DecimalError::OutOfRange { .. })
        ));
        assert_eq!(i64::try_from(d("-9223372036854775808")), Ok(i64::MIN));
    }

    #[test]
    fn formatting() {
        let x = d("-2.25");
        assert_eq!(format!("{x:.1}"), "-2.3");
        assert_eq!(format!("{x:.0}"), "-2");
        assert_eq!(format!("{x:.4}"), "-2.2500");
        assert_eq!(format!("{x:>8}"), "   -2.25");
        assert_eq!(format!("{x:<8}|"), "-2.25   |");
        assert_eq!(format!("{x:08.1}"), "-00002.3");
        assert_eq!(format!("{:.2}", Decimal::from(5)), "5.00");
        assert_eq!(format!("{:.2}", d("0.001")), "0.00");
    }
}
