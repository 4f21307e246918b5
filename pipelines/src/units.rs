//! Durations (`90s`, `20m`, `1h30m`) and sizes (`512m`, `4g`): the two unit grammars of the
//! pipeline file. Errors say what is accepted, so they can be shown as they are.

use std::time::Duration;

const DURATION_HELP: &str = "use whole numbers with ms, s, m or h, like 500ms, 90s, 20m or 1h30m";
const SIZE_HELP: &str =
    "use a number with k, m, g or t (powers of 1024), like 512m, 4g or 1.5g, or plain bytes";

/// Parses a positive duration made of `<digits><unit>` parts, units `ms`, `s`, `m`, `h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim().is_empty() {
        return Err(format!("empty duration; {DURATION_HELP}"));
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!("invalid duration \"{s}\"; {DURATION_HELP}"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration \"{s}\" is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.len() - rest.trim_start_matches(|c: char| c.is_alphabetic()).len();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" if rest.is_empty() => {
                return Err(format!("missing unit in duration \"{s}\"; {DURATION_HELP}"));
            }
            "" => return Err(format!("invalid duration \"{s}\"; {DURATION_HELP}")),
            _ => {
                return Err(format!(
                    "unknown unit \"{unit}\" in duration \"{s}\"; {DURATION_HELP}"
                ));
            }
        };
        total = number
            .checked_mul(millis)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration \"{s}\" is too large"))?;
    }
    if total == 0 {
        return Err(format!("duration \"{s}\" must be greater than zero"));
    }
    Ok(Duration::from_millis(total))
}

/// Parses a positive size in bytes: plain bytes, or a number (decimals allowed) with a
/// case-insensitive unit `k`, `m`, `g`, `t`, optionally followed by `b` or `ib`; all are
/// powers of 1024, as Docker reads them.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty size; {SIZE_HELP}"));
    }
    if t.starts_with('-') {
        return Err(format!("size \"{s}\" is negative; {SIZE_HELP}"));
    }
    let number_len = t.len()
        - t.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .len();
    let (number, unit) = t.split_at(number_len);
    let unit = unit.trim_start().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("invalid size \"{s}\"; {SIZE_HELP}")),
    };
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    let valid_digits = |d: &str| d.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !valid_digits(int) || !valid_digits(frac) {
        return Err(format!("invalid size \"{s}\"; {SIZE_HELP}"));
    }
    if !frac.is_empty() && shift == 0 {
        return Err(format!(
            "size \"{s}\" has a fraction of a byte; {SIZE_HELP}"
        ));
    }
    let too_large = || format!("size \"{s}\" is too large");
    // Exact rational arithmetic: 1.5g is 1.5 * 2^30 bytes, with no float rounding.
    let int_value: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_large())?
    };
    let frac = frac.trim_end_matches('0');
    if frac.len() > 30 {
        return Err(format!("invalid size \"{s}\"; {SIZE_HELP}"));
    }
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| too_large())?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let bytes = int_value
        .checked_mul(1 << shift)
        .and_then(|b| b.checked_add(frac_value.checked_mul(1 << shift)? / scale))
        .ok_or_else(too_large)?;
    let bytes = u64::try_from(bytes).map_err(|_| too_large())?;
    if bytes == 0 {
        return Err(format!("size \"{s}\" must be greater than zero"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| parse_duration(s).unwrap();
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("90s"), Duration::from_secs(90));
        assert_eq!(d("20m"), Duration::from_secs(1200));
        assert_eq!(d("1h"), Duration::from_secs(3600));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1m30s500ms"), Duration::from_millis(90_500));
    }

    #[test]
    fn bad_durations() {
        let e = |s: &str| parse_duration(s).unwrap_err();
        assert!(e("").starts_with("empty duration; use whole numbers"));
        assert_eq!(
            e("30"),
            "missing unit in duration \"30\"; use whole numbers with ms, s, m or h, like 500ms, \
             90s, 20m or 1h30m"
        );
        assert!(e("2d").starts_with("unknown unit \"d\" in duration \"2d\";"));
        assert!(e("0s").ends_with("must be greater than zero"));
        assert!(e("0h0m").ends_with("must be greater than zero"));
        assert!(e("99999999999999999999s").ends_with("is too large"));
        assert!(e("9999999999999999h").ends_with("is too large"));
        assert!(e("abc").starts_with("invalid duration \"abc\""));
        assert!(e("-5s").starts_with("invalid duration"));
        assert!(e("1.5h").starts_with("invalid duration"));
        assert!(e("5 s").starts_with("invalid duration"));
        assert!(e("h").starts_with("invalid duration"));
        assert!(e("10s5").starts_with("missing unit"));
    }

    #[test]
    fn sizes() {
        let z = |s: &str| parse_size(s).unwrap();
        assert_eq!(z("512m"), 512 << 20);
        assert_eq!(z("4g"), 4 << 30);
        assert_eq!(z("4G"), 4 << 30);
        assert_eq!(z("1.5g"), 3 << 29);
        assert_eq!(z("64k"), 64 << 10);
        assert_eq!(z("100mb"), 100 << 20);
        assert_eq!(z("2GiB"), 2 << 30);
        assert_eq!(z("1048576"), 1_048_576);
        assert_eq!(z("10b"), 10);
        assert_eq!(z(".5k"), 512);
        assert_eq!(z("1t"), 1 << 40);
    }

    #[test]
    fn bad_sizes() {
        let e = |s: &str| parse_size(s).unwrap_err();
        assert!(e("").starts_with("empty size"));
        assert!(e("-1g").starts_with("size \"-1g\" is negative"));
        assert!(e("lots").starts_with("invalid size \"lots\""));
        assert!(e("4x").starts_with("invalid size"));
        assert!(e("1.2.3m").starts_with("invalid size"));
        assert!(e(".").starts_with("invalid size"));
        assert!(e("0").ends_with("must be greater than zero"));
        assert!(e("0.0g").ends_with("must be greater than zero"));
        assert!(e("1.5").contains("fraction of a byte"));
        assert!(e("99999999999t").ends_with("is too large"));
        assert!(e("99999999999999999999999999999999999999999").ends_with("is too large"));
        assert!(e("4g;").starts_with("invalid size"));
        assert!(e("4ģ").starts_with("invalid size"));
    }
}
