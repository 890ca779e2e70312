//! Limit definitions and the validation rules for every user-supplied name.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bucket::BucketParams;
use crate::error::{Error, Result};

/// Largest capacity or refill amount a limit may have, in tokens (10^12).
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;
/// Most limits one bucket (one entity on one resource) may hold: what one conditional
/// `UpdateItem` can carry within DynamoDB's 300-operator expression limit, with room to
/// spare. Every entry point (`acquire`, `set_config`, the CLI) refuses more.
pub const MAX_LIMITS: usize = 32;
/// Longest refill period a limit may have (366 days).
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 86_400);

/// One token-bucket limit: `capacity` tokens at most, refilled by `refill_amount`
/// tokens every `refill_period` (continuously, not in steps).
///
/// ```
/// use zae_limiter::Limit;
/// let rpm = Limit::per_minute("rpm", 100);
/// let tpm = Limit::per_minute("tpm", 10_000).burst(15_000);
/// assert_eq!(tpm.capacity(), 15_000);
/// assert_eq!(tpm.refill_amount(), 10_000);
/// assert!(rpm.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limit {
    name: String,
    capacity: u64,
    refill_amount: u64,
    refill_period_ms: u64,
}

impl Limit {
    fn with_period(name: impl Into<String>, rate: u64, period_ms: u64) -> Self {
        Limit {
            name: name.into(),
            capacity: rate,
            refill_amount: rate,
            refill_period_ms: period_ms,
        }
    }
    /// `rate` tokens per second; capacity `rate` unless changed with [`Limit::burst`].
    pub fn per_second(name: impl Into<String>, rate: u64) -> Self {
        Self::with_period(name, rate, 1_000)
    }
    /// `rate` tokens per minute.
    pub fn per_minute(name: impl Into<String>, rate: u64) -> Self {
        Self::with_period(name, rate, 60_000)
    }
    /// `rate` tokens per hour.
    pub fn per_hour(name: impl Into<String>, rate: u64) -> Self {
        Self::with_period(name, rate, 3_600_000)
    }
    /// `rate` tokens per day.
    pub fn per_day(name: impl Into<String>, rate: u64) -> Self {
        Self::with_period(name, rate, 86_400_000)
    }
    /// Any shape: `capacity` tokens at most, `refill_amount` tokens per `refill_period`.
    pub fn custom(
        name: impl Into<String>,
        capacity: u64,
        refill_amount: u64,
        refill_period: Duration,
    ) -> Self {
        Limit {
            name: name.into(),
            capacity,
            refill_amount,
            refill_period_ms: refill_period.as_millis().min(u64::MAX as u128) as u64,
        }
    }
    /// Set the bucket capacity (burst) while keeping the sustained rate.
    pub fn burst(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// The limit's name (`rpm`, `tpm`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Maximum tokens the bucket holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    /// Tokens added per refill period.
    pub fn refill_amount(&self) -> u64 {
        self.refill_amount
    }
    /// The refill period.
    pub fn refill_period(&self) -> Duration {
        Duration::from_millis(self.refill_period_ms)
    }
    /// The refill period in milliseconds.
    pub fn refill_period_ms(&self) -> u64 {
        self.refill_period_ms
    }

    /// Check the name and the numeric ranges.
    pub fn validate(&self) -> Result<()> {
        validate_limit_name(&self.name)?;
        let range = |what: &str, v: u64| {
            if v == 0 || v > MAX_AMOUNT {
                Err(Error::invalid(
                    "limit",
                    format!(
                        "{what} of limit '{}' must be between 1 and {MAX_AMOUNT}, got {v}",
                        self.name
                    ),
                ))
            } else {
                Ok(())
            }
        };
        range("capacity", self.capacity)?;
        range("refill amount", self.refill_amount)?;
        if self.refill_period_ms == 0 || self.refill_period_ms > MAX_PERIOD.as_millis() as u64 {
            return Err(Error::invalid(
                "limit",
                format!(
                    "refill period of limit '{}' must be between 1 ms and 366 days, got {} ms",
                    self.name, self.refill_period_ms
                ),
            ));
        }
        Ok(())
    }

    /// The integer parameters used by the bucket math (millitokens, ms).
    pub fn params(&self) -> BucketParams {
        BucketParams::new(self.capacity, self.refill_amount, self.refill_period_ms)
    }
}

/// The grammar [`Limit`]'s `FromStr` accepts and `Display` prints, quoted in parse errors.
const SPEC_SYNTAX: &str = "expected name:rate[/period][:burst] with period [N]ms|sec|min|hour|day \
(also s, second, m, minute, h, d; N defaults to 1, the period to min; rate, burst and N are whole \
numbers, '_' allowed between digits), e.g. rpm:100, tpm:10000/min:15000, rph:500/hour, x:10/5min, \
y:1/1500ms";

impl std::str::FromStr for Limit {
    type Err = Error;

    /// Parse the CLI syntax `name:rate[/period][:burst]`; the period is
    /// `[N]ms|sec|min|hour|day` (also `s`, `second`, `m`, `minute`, `h`, `d`), `N` defaults
    /// to 1 and the period to `min`; rate, burst and `N` are whole numbers (digits, `_`
    /// allowed as a separator). Whatever [`Display`](std::fmt::Display) prints parses back
    /// to the same limit.
    ///
    /// ```
    /// use zae_limiter::Limit;
    /// let l: Limit = "tpm:10000/min:15000".parse().unwrap();
    /// assert_eq!(l, Limit::per_minute("tpm", 10_000).burst(15_000));
    /// assert_eq!("x:10/5min".parse::<Limit>().unwrap().refill_period_ms(), 300_000);
    /// assert_eq!("y:1/1500ms".parse::<Limit>().unwrap().refill_period_ms(), 1_500);
    /// assert!("tpm=100".parse::<Limit>().is_err());
    /// ```
    fn from_str(spec: &str) -> Result<Self> {
        let bad =
            |why: String| Error::invalid("limit", format!("{why} in '{spec}': {SPEC_SYNTAX}"));
        let mut parts = spec.split(':');
        let (name, rate_part, burst) =
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(n), Some(r), b, None) => (n, r, b),
                _ => return Err(bad("wrong number of ':' separated parts".into())),
            };
        let (rate, period) = match rate_part.split_once('/') {
            Some((r, p)) => (r, Some(p)),
            None => (rate_part, None),
        };
        let number = |what: &str, v: &str| {
            let not_whole = || bad(format!("{what} '{v}' is not a whole number"));
            // digits with '_' separators only: u64's parser would also take a leading '+'
            if !v.starts_with(|c: char| c.is_ascii_digit())
                || !v.chars().all(|c| c.is_ascii_digit() || c == '_')
            {
                return Err(not_whole());
            }
            v.replace('_', "").parse::<u64>().map_err(|_| not_whole())
        };
        let rate = number("rate", rate)?;
        let period_ms = match period {
            None => 60_000,
            Some(p) => {
                let digits = p
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '_')
                    .count();
                let n = if digits == 0 {
                    1
                } else {
                    number("period", &p[..digits])?
                };
                let unit = match &p[digits..] {
                    "ms" => 1,
                    "s" | "sec" | "second" => 1_000,
                    "m" | "min" | "minute" => 60_000,
                    "h" | "hour" => 3_600_000,
                    "d" | "day" => 86_400_000,
                    other => return Err(bad(format!("unknown period unit '{other}'"))),
                };
                n.checked_mul(unit)
                    .ok_or_else(|| bad("period too long".into()))?
            }
        };
        let limit = Limit {
            name: name.to_string(),
            capacity: match burst {
                Some(b) => number("burst", b)?,
                None => rate,
            },
            refill_amount: rate,
            refill_period_ms: period_ms,
        };
        limit.validate()?;
        Ok(limit)
    }
}

impl std::fmt::Display for Limit {
    /// The same syntax [`FromStr`](std::str::FromStr) accepts, e.g. `tpm:10000/min:15000`
    /// or `x:1/1500ms`: the largest whole unit of the period, `/min` included.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.refill_period_ms;
        let (n, unit) = [
            (86_400_000, "day"),
            (3_600_000, "hour"),
            (60_000, "min"),
            (1_000, "sec"),
        ]
        .into_iter()
        .find(|(u, _)| ms % u == 0)
        .map_or((ms, "ms"), |(u, name)| (ms / u, name));
        write!(f, "{}:{}/", self.name, self.refill_amount)?;
        if n != 1 {
            write!(f, "{n}")?;
        }
        write!(f, "{unit}")?;
        if self.capacity != self.refill_amount {
            write!(f, ":{}", self.capacity)?;
        }
        Ok(())
    }
}

fn check_chars(
    field: &'static str,
    value: &str,
    max: usize,
    first_ok: impl Fn(char) -> bool,
    rest_ok: impl Fn(char) -> bool,
    rule: &str,
) -> Result<()> {
    let mut chars = value.chars();
    let valid = match chars.next() {
        None => false,
        Some(c) => first_ok(c) && chars.all(rest_ok),
    };
    if !valid || value.len() > max {
        let shown: String = value.chars().take(64).collect();
        return Err(Error::invalid(
            field,
            format!("'{shown}' is not allowed: {rule}, 1 to {max} characters"),
        ));
    }
    Ok(())
}

/// Limit names: `[A-Za-z0-9_.-]{1,64}`.
pub fn validate_limit_name(name: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    check_chars(
        "limit name",
        name,
        64,
        ok,
        ok,
        "use letters, digits, '_', '.', '-'",
    )
}

/// Entity ids: a letter or digit, then letters, digits, `_ . - : @`; at most 256 characters.
pub fn validate_entity_id(id: &str) -> Result<()> {
    check_chars(
        "entity_id",
        id,
        256,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '@'),
        "start with a letter or digit, then letters, digits, '_', '.', '-', ':', '@'",
    )
}

/// Resource names: a letter, then letters, digits, `_ . - /` (e.g. `openai/gpt-4o`); at most 64.
pub fn validate_resource(resource: &str) -> Result<()> {
    check_chars(
        "resource",
        resource,
        64,
        |c| c.is_ascii_alphabetic(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'),
        "start with a letter, then letters, digits, '_', '.', '-', '/'",
    )
}

/// Validate a set of limits: each one, and no duplicate names.
pub(crate) fn validate_limits(limits: &[Limit]) -> Result<()> {
    if limits.len() > MAX_LIMITS {
        return Err(Error::invalid(
            "limits",
            format!(
                "{} limits given; one bucket holds at most {MAX_LIMITS}",
                limits.len()
            ),
        ));
    }
    for (i, l) in limits.iter().enumerate() {
        l.validate()?;
        if limits[..i].iter().any(|o| o.name == l.name) {
            return Err(Error::invalid(
                "limits",
                format!("limit '{}' is given twice", l.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_rate_and_period() {
        let l = Limit::per_hour("rph", 7).burst(20);
        assert_eq!(
            (l.capacity(), l.refill_amount(), l.refill_period_ms()),
            (20, 7, 3_600_000)
        );
        assert_eq!(Limit::per_second("a", 1).refill_period_ms(), 1_000);
        assert_eq!(Limit::per_day("a", 1).refill_period_ms(), 86_400_000);
    }

    #[test]
    fn validation_rejects_bad_values() {
        assert!(Limit::per_minute("rpm", 0).validate().is_err());
        assert!(Limit::per_minute("rpm", MAX_AMOUNT + 1).validate().is_err());
        assert!(Limit::per_minute("r#m", 1).validate().is_err());
        assert!(Limit::per_minute("", 1).validate().is_err());
        assert!(Limit::per_minute("a/b", 1).validate().is_err());
        assert!(Limit::custom("x", 1, 1, Duration::ZERO).validate().is_err());
        assert!(Limit::custom("x", 1, 1, Duration::from_secs(367 * 86_400))
            .validate()
            .is_err());
        let err = Limit::per_minute("rpm", 0)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("capacity of limit 'rpm'"), "{err}");
    }

    #[test]
    fn spec_round_trips() {
        for (spec, want) in [
            ("rpm:100", Limit::per_minute("rpm", 100)),
            (
                "tpm:10000/min:15000",
                Limit::per_minute("tpm", 10_000).burst(15_000),
            ),
            ("rph:500/hour", Limit::per_hour("rph", 500)),
            ("rps:5/sec", Limit::per_second("rps", 5)),
            ("rpd:1_000/day", Limit::per_day("rpd", 1_000)),
            (
                "x:10/5min",
                Limit::custom("x", 10, 10, Duration::from_secs(300)),
            ),
        ] {
            let got: Limit = spec.parse().unwrap();
            assert_eq!(got, want, "{spec}");
            assert_eq!(got.to_string().parse::<Limit>().unwrap(), want);
        }
        assert_eq!(
            Limit::per_minute("tpm", 10).burst(15).to_string(),
            "tpm:10/min:15"
        );
        for bad in [
            "rpm",
            "rpm:",
            "rpm:x",
            "rpm:10/fortnight",
            "rpm:10:20:30",
            "r#m:10",
            "rpm:0",
            "rpm:10/0min",
            "rpm:+10",
            "rpm:10/+5min",
            "rpm:_1",
            "rpm:10/0ms",
            "rpm:10/5us",
        ] {
            let e = bad.parse::<Limit>().unwrap_err().to_string();
            assert!(e.starts_with("invalid limit"), "{bad}: {e}");
        }
        assert!("rpm:x"
            .parse::<Limit>()
            .unwrap_err()
            .to_string()
            .contains("expected name:rate"));
    }

    #[test]
    fn ms_periods_parse() {
        let l: Limit = "x:1/1500ms".parse().unwrap();
        assert_eq!(l, Limit::custom("x", 1, 1, Duration::from_millis(1_500)));
        assert_eq!(l.to_string(), "x:1/1500ms");
        assert_eq!("x:1/ms".parse::<Limit>().unwrap().refill_period_ms(), 1);
        assert_eq!(
            "x:1/1_500ms".parse::<Limit>().unwrap().refill_period_ms(),
            1_500
        );
        assert_eq!(
            Limit::custom("x", 1, 1, Duration::from_millis(1)).to_string(),
            "x:1/ms"
        );
        assert_eq!(
            Limit::custom("x", 3, 2, Duration::from_secs(7200)).to_string(),
            "x:2/2hour:3"
        );
    }

    fn arb_limit() -> impl proptest::strategy::Strategy<Value = Limit> {
        use proptest::prelude::*;
        let period = prop_oneof![
            1..=MAX_PERIOD.as_millis() as u64,
            (1..=366u64).prop_map(|d| d * 86_400_000),
            (1..=1_000u64).prop_map(|m| m * 60_000),
            (1..=1_000u64).prop_map(|s| s * 1_000),
        ];
        (
            "[A-Za-z0-9_.-]{1,64}",
            1..=MAX_AMOUNT,
            1..=MAX_AMOUNT,
            period,
        )
            .prop_map(|(name, capacity, refill, ms)| {
                Limit::custom(name, capacity, refill, Duration::from_millis(ms))
            })
    }

    proptest::proptest! {
        #[test]
        fn display_parses_back(l in arb_limit()) {
            proptest::prop_assert!(l.validate().is_ok());
            let shown = l.to_string();
            proptest::prop_assert_eq!(shown.parse::<Limit>().ok(), Some(l), "{}", shown);
        }
    }

    #[test]
    fn identifiers() {
        assert!(validate_entity_id("user-1@example.com").is_ok());
        assert!(validate_entity_id("-x").is_err());
        assert!(validate_entity_id("a#b").is_err());
        assert!(validate_entity_id(&"a".repeat(257)).is_err());
        assert!(validate_resource("openai/gpt-4o").is_ok());
        assert!(validate_resource("_default_").is_err());
        assert!(validate_resource("9lives").is_err());
        let dup = [Limit::per_minute("a", 1), Limit::per_hour("a", 1)];
        assert!(validate_limits(&dup).is_err());
    }
}
