//! Durations for people: `850 µs`, `3.1 ms`, `2.7 s`, `1 min 5 s`.

use std::fmt;
use std::time::Duration;

/// Displays a duration rounded for a log line (`Debug` would print
/// `2.705124091s`).
#[derive(Debug, Clone, Copy)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let us = d.as_micros();
        if us < 1_000 {
            write!(f, "{us} µs")
        } else if us < 10_000 {
            write!(f, "{:.1} ms", us as f64 / 1e3)
        } else if us < 1_000_000 {
            write!(f, "{} ms", (us + 500) / 1_000)
        } else if d.as_secs() < 60 && d.subsec_nanos() == 0 {
            write!(f, "{} s", d.as_secs())
        } else if d.as_secs() < 60 {
            write!(f, "{:.1} s", d.as_secs_f64())
        } else {
            write!(f, "{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dur;
    use std::time::Duration;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        let s = |d| Dur(d).to_string();
        assert_eq!(s(Duration::from_micros(850)), "850 µs");
        assert_eq!(s(Duration::from_micros(3_140)), "3.1 ms");
        assert_eq!(s(Duration::from_micros(42_400)), "42 ms");
        assert_eq!(s(Duration::from_nanos(2_705_124_091)), "2.7 s");
        assert_eq!(s(Duration::from_secs(30)), "30 s");
        assert_eq!(s(Duration::from_secs(65)), "1 min 5 s");
    }
}
