//! Limit definitions and the validation rules for every user-supplied name.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bucket::BucketParams;
use crate::error::{Error, Result};

/// Largest capacity or refill amount a limit may have, in tokens (10^12).
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;
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
