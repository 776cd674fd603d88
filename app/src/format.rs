//! Plain-language formatting of sizes, times, durations and numbers,
//! identical on the server and in the browser (so hydration never sees a
//! different string).

use hone_protocol::{Device, DeviceKind, Method};

/// `1536` → `"1.5 KiB"`; exact bytes below 1 KiB.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// Unix seconds → `"2026-11-29 09:24 UTC"` (proleptic Gregorian calendar).
pub fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// A whole number with thousands separated: `36258` → `"36,258"`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A length of time for people: `"45 s"`, `"3 min 20 s"`, `"2 h 05 min"`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "unknown".into();
    }
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// A time estimate as a range in one unit: `"about 2–8 minutes"`,
/// `"about 1 hour"`.
pub fn about(low_s: f64, high_s: f64) -> String {
    if !(low_s.is_finite() && high_s.is_finite()) || high_s < 0.0 {
        return "unknown".into();
    }
    let (low_s, high_s) = (low_s.max(0.0).min(high_s), high_s);
    let (unit, name) = match high_s {
        h if h < 90.0 => (1.0, "second"),
        h if h < 90.0 * 60.0 => (60.0, "minute"),
        h if h < 48.0 * 3600.0 => (3600.0, "hour"),
        _ => (86_400.0, "day"),
    };
    let low = (low_s / unit).round().max(1.0) as u64;
    let high = ((high_s / unit).round() as u64).max(low);
    let plural = if high == 1 { "" } else { "s" };
    if low == high {
        format!("about {high} {name}{plural}")
    } else {
        format!("about {low}–{high} {name}{plural}")
    }
}

/// 10^`k`, exactly as the decimal literal reads. Not `powf`: its last bit
/// may differ between the server and WASM, and a chart drawn on one and
/// hydrated on the other must come out the same.
pub fn pow10(k: i32) -> f64 {
    format!("1e{k}").parse().unwrap_or(f64::NAN)
}

/// The largest `k` with 10^`k` ≤ |`v`| (0 for 0 and non-finite values);
/// exact on every platform, unlike `log10().floor()`.
pub fn decade(v: f64) -> i32 {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() {
        return 0;
    }
    let mut k = 0;
    while k > -320 && pow10(k) > a {
        k -= 1;
    }
    while k < 308 && pow10(k + 1) <= a {
        k += 1;
    }
    k
}

/// A measured quantity with four significant digits; very small or large
/// ones in scientific notation (`2.000e-4`).
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "not a number".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else {
        let digits = if a == 0.0 {
            0
        } else {
            (3 - decade(a)).clamp(0, 6) as usize
        };
        format!("{v:.digits$}")
    }
}

/// A chart's tick label, as precise as the distance `step` between ticks.
pub fn tick(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if step < 1e-3 || v.abs() >= 1e6 {
        // As many mantissa digits as the step needs: 1.998e-4, 2.000e-4.
        let digits = (decade(v) - decade(step)).clamp(1, 3) as usize;
        return format!("{v:.digits$e}");
    }
    let digits = if step >= 1.0 {
        0
    } else {
        (-decade(step)).max(0) as usize
    };
    format!("{v:.digits$}")
}

/// The method's name as people read it.
pub fn method(m: Method) -> &'static str {
    match m {
        Method::Lora => "LoRA",
        Method::Qlora => "QLoRA",
        Method::Full => "Full fine-tuning",
    }
}

/// `"NVIDIA H200 (GPU 0, 139.8 GiB)"`, `"CPU slot: AMD EPYC (125.0 GiB RAM)"`.
pub fn device(d: &Device) -> String {
    let memory = if d.memory_bytes == 0 {
        "memory unknown".to_owned()
    } else {
        bytes(d.memory_bytes.min(i64::MAX as u64) as i64)
    };
    match d.kind {
        DeviceKind::Cuda => match d.index {
            Some(i) => format!("{} (GPU {i}, {memory})", d.name),
            None => format!("{} (GPU, {memory})", d.name),
        },
        DeviceKind::Cpu => format!("CPU slot: {} ({memory} RAM)", d.name),
    }
}

/// `s` percent-encoded for a URL's query (everything but unreserved
/// characters).
pub fn url_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(2 * 1024 * 1024 * 1024), "2.0 GiB");
    }

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_117_040), "2026-12-01 09:24 UTC");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(36_258), "36,258");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(200.0), "3 min 20 s");
        assert_eq!(duration(7500.0), "2 h 05 min");
        assert_eq!(about(130.0, 470.0), "about 2–8 minutes");
        assert_eq!(about(3000.0, 3300.0), "about 50–55 minutes");
        assert_eq!(about(0.2, 0.9), "about 1 second");
        assert_eq!(about(4000.0, 16000.0), "about 1–4 hours");
        assert_eq!(about(f64::NAN, 1.0), "unknown");
    }

    #[test]
    fn decades_are_exact() {
        assert_eq!(decade(1.0), 0);
        assert_eq!(decade(999.9), 2);
        assert_eq!(decade(1000.0), 3);
        assert_eq!(decade(0.001), -3);
        assert_eq!(decade(0.00099), -4);
        assert_eq!(decade(-0.05), -2);
        assert_eq!(pow10(-3), 0.001);
    }

    #[test]
    fn numbers_keep_four_digits() {
        assert_eq!(number(2.34567), "2.346");
        assert_eq!(number(0.0123456), "0.01235");
        assert_eq!(number(2e-4), "2.000e-4");
        assert_eq!(number(1234.4), "1234");
        assert_eq!(number(f64::NAN), "not a number");
        assert_eq!(tick(0.5, 0.5), "0.5");
        assert_eq!(tick(2.2, 0.2), "2.2");
        assert_eq!(tick(40.0, 20.0), "40");
        assert_eq!(tick(2e-4, 5e-5), "2.0e-4");
        assert_eq!(tick(1.998e-4, 2e-7), "1.998e-4");
        assert_eq!(tick(0.0, 5e-5), "0");
    }
}
