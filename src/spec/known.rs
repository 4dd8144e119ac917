//! Values AWS accepts for keys whose set grows over time: a value outside these tables gets a
//! warning with the nearest known value, never an error (AWS may have added it since).
//!
//! Sources, as read on 2026-11-29:
//! - instance classes: Amazon Aurora User Guide, "Supported DB engines for DB instance
//!   classes" (`Concepts.DBInstanceClass.SupportAurora`), the Aurora PostgreSQL column, and the
//!   document history entry adding db.r9g (2026-11-12);
//! - engine versions: Amazon Aurora User Guide, "Getting a list of available versions in your
//!   AWS Region" (`USER_UpgradeDBInstance.PostgreSQL.UpgradeVersion`), the upgrade-target
//!   table. `aws rds describe-db-engine-versions --engine aurora-postgresql` is the authority
//!   for a given region.

/// Instance sizes, smallest first: `large` (2 vCPUs) and `xlarge` (4), then `Nxlarge`.
const SIZES: &[&str] = &[
    "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
    "32xlarge", "48xlarge",
];

/// Aurora PostgreSQL instance class families, with the sizes each offers: T classes `medium`
/// and `large`; the others the [`SIZES`] from their smallest to their largest.
const INSTANCE_FAMILIES: &[(&str, &str, &str)] = &[
    ("t3", "medium", "large"),
    ("t4g", "medium", "large"),
    ("r5", "large", "24xlarge"),
    ("r6g", "large", "16xlarge"),
    ("r6gd", "xlarge", "16xlarge"),
    ("r6i", "large", "32xlarge"),
    ("r6id", "xlarge", "32xlarge"),
    ("r7g", "large", "16xlarge"),
    ("r7i", "large", "48xlarge"),
    ("r8g", "large", "48xlarge"),
    ("r8gd", "large", "48xlarge"),
    ("r9g", "large", "48xlarge"),
    ("x2g", "large", "16xlarge"),
];

/// The sizes of a family, smallest first (the 32xlarge step exists only in the 6th
/// generation Intel families, r6i and r6id).
fn sizes(family: &str, smallest: &str, largest: &str) -> Vec<&'static str> {
    if smallest == "medium" {
        return vec!["medium", "large"];
    }
    let from = SIZES.iter().position(|size| *size == smallest).unwrap_or(0);
    let to = SIZES
        .iter()
        .position(|size| *size == largest)
        .unwrap_or(SIZES.len() - 1);
    SIZES[from..=to]
        .iter()
        .copied()
        .filter(|size| *size != "32xlarge" || family.starts_with("r6i"))
        .collect()
}

/// Aurora PostgreSQL engine versions (major, minors).
const ENGINE_VERSIONS: &[(u32, &[u32])] = &[
    (17, &[4, 5, 6]),
    (16, &[1, 2, 3, 4, 6, 8, 9, 10]),
    (15, &[2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13]),
    (14, &[3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 17, 18]),
    (13, &[9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 21]),
];

/// Every known instance class, `db.serverless` first.
pub fn instance_classes() -> Vec<String> {
    let mut classes = vec!["db.serverless".to_string()];
    for (family, smallest, largest) in INSTANCE_FAMILIES {
        classes.extend(
            sizes(family, smallest, largest)
                .iter()
                .map(|size| format!("db.{family}.{size}")),
        );
    }
    classes
}

/// `None` when `class` is a known Aurora PostgreSQL instance class, else the nearest known
/// one (same family and the nearest size when the family is known, else the closest name).
pub fn unknown_instance_class(class: &str) -> Option<String> {
    let known = instance_classes();
    if known.iter().any(|known| known == class) {
        return None;
    }
    let family = class
        .strip_prefix("db.")
        .and_then(|rest| rest.split('.').next());
    if let Some((family, smallest, largest)) = INSTANCE_FAMILIES
        .iter()
        .find(|(known, _, _)| Some(*known) == family)
    {
        let sizes = sizes(family, smallest, largest);
        let size = class.rsplit('.').next().unwrap_or_default();
        let nearest = match size_units(size) {
            // A size like 3xlarge: the nearest capacity.
            Some(units) => sizes.iter().min_by(|a, b| {
                let distance = |size: &str| (size_units(size).unwrap_or(0.0) - units).abs();
                distance(a).total_cmp(&distance(b))
            }),
            // A misspelt size: the nearest name.
            None => sizes.iter().max_by(|a, b| {
                strsim::jaro_winkler(size, a).total_cmp(&strsim::jaro_winkler(size, b))
            }),
        }
        .unwrap_or(&sizes[0]);
        return Some(format!("db.{family}.{nearest}"));
    }
    known
        .into_iter()
        .max_by(|a, b| strsim::jaro_winkler(class, a).total_cmp(&strsim::jaro_winkler(class, b)))
}

/// The capacity of an instance size in units of `large`: medium 0.5, large 1, xlarge 2,
/// `Nxlarge` 2N (the EC2 naming rule).
fn size_units(size: &str) -> Option<f64> {
    match size {
        "medium" => Some(0.5),
        "large" => Some(1.0),
        "xlarge" => Some(2.0),
        _ => size
            .strip_suffix("xlarge")?
            .parse::<u32>()
            .ok()
            .map(|n| 2.0 * f64::from(n)),
    }
}

/// `None` when `version` (`MAJOR.MINOR`, or `MAJOR` alone, which RDS completes with its
/// default minor) is a known Aurora PostgreSQL version, else the nearest known one: the
/// closest minor of the same major, else the newest minor of the closest major.
pub fn unknown_engine_version(version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: Option<u32> = parts.next().and_then(|minor| minor.parse().ok());
    let (known_major, minors) = ENGINE_VERSIONS
        .iter()
        .min_by_key(|(known, _)| known.abs_diff(major))?;
    if *known_major == major {
        let minor = minor?;
        if minors.contains(&minor) {
            return None;
        }
        let nearest = minors.iter().min_by_key(|known| known.abs_diff(minor))?;
        return Some(format!("{major}.{nearest}"));
    }
    Some(format!("{known_major}.{}", minors.last()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_pass_and_unknown_ones_get_the_nearest() {
        for (class, nearest) in [
            ("db.t4g.medium", None),
            ("db.serverless", None),
            ("db.r7g.2xlarge", None),
            ("db.t4g.medum", Some("db.t4g.medium")),
            ("db.r7g.3xlarge", Some("db.r7g.2xlarge")),
            ("db.t5g.medium", Some("db.t4g.medium")),
        ] {
            assert_eq!(unknown_instance_class(class).as_deref(), nearest, "{class}");
        }
        for (version, nearest) in [
            ("17.4", None),
            ("16", None),
            ("16.5", Some("16.4")),
            ("17.9", Some("17.6")),
            ("19.1", Some("17.6")),
            ("9.6", Some("13.21")),
        ] {
            assert_eq!(
                unknown_engine_version(version).as_deref(),
                nearest,
                "{version}"
            );
        }
    }
}
