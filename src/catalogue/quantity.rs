//! Parsing of Kubernetes resource quantities and human model sizes.

pub const GIB: u64 = 1 << 30;

/// CPU as millicores: `500m`, `2`, `1.5`.
pub fn parse_cpu_millis(s: &str) -> Result<u64, String> {
    if let Some(millis) = s.strip_suffix('m') {
        return millis
            .parse::<u64>()
            .map_err(|_| "not a whole number of millicores".to_string());
    }
    let cores: f64 = s.parse().map_err(|_| "not a CPU quantity".to_string())?;
    if !cores.is_finite() || cores < 0.0 {
        return Err("not a CPU quantity".into());
    }
    Ok((cores * 1000.0).round() as u64)
}

/// A Kubernetes memory/storage quantity in bytes: `12Gi`, `500Mi`, `1G`, `1024`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    const SUFFIXES: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| s.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((s, 1));
    let n: u64 = number
        .parse()
        .map_err(|_| "not a Kubernetes quantity (e.g. 16Gi)".to_string())?;
    n.checked_mul(factor)
        .ok_or_else(|| "quantity too large".to_string())
}

/// A download size as the published catalogue writes it: `14GB`, `2.5GB`, `350MB` (decimal units).
pub fn parse_model_size(s: &str) -> Result<u64, String> {
    let (number, factor) = if let Some(n) = s.strip_suffix("GB") {
        (n, 1e9)
    } else if let Some(n) = s.strip_suffix("MB") {
        (n, 1e6)
    } else {
        return Err("expected a size in MB or GB (e.g. 14GB)".into());
    };
    let value: f64 = number.parse().map_err(|_| "not a number".to_string())?;
    if !value.is_finite() || value <= 0.0 {
        return Err("size must be positive".into());
    }
    Ok((value * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu_millis("3000m"), Ok(3000));
        assert_eq!(parse_cpu_millis("1.5"), Ok(1500));
        assert!(parse_cpu_millis("lots").is_err());
        assert!(parse_cpu_millis("1.5m").is_err());
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("12Gi"), Ok(12 * GIB));
        assert_eq!(parse_bytes("500M"), Ok(500_000_000));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("12GB").is_err());
        assert!(parse_bytes("Gi").is_err());
    }

    #[test]
    fn model_size() {
        assert_eq!(parse_model_size("2.5GB"), Ok(2_500_000_000));
        assert_eq!(parse_model_size("350MB"), Ok(350_000_000));
        assert!(parse_model_size("3 GiB").is_err());
        assert!(parse_model_size("0GB").is_err());
    }
}
