//! IPv4 CIDR blocks: parsing with precise errors, overlap, and carving subnets.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not a CIDR block (expected a.b.c.d/n)")]
    Syntax(String),
    #[error("prefix length /{0} is out of range (0..=32)")]
    Prefix(u32),
    #[error("`{given}` has host bits set")]
    HostBits { given: String, network: Ipv4Cidr },
}

impl Ipv4Cidr {
    /// `0.0.0.0/0`: the block of a referenced VPC before discovery read it
    /// ([`super::model::Network`]).
    pub const UNKNOWN: Ipv4Cidr = Ipv4Cidr {
        network: 0,
        prefix: 0,
    };

    pub fn new(address: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        let network = u32::from(address) & mask(prefix);
        Some(Ipv4Cidr { network, prefix })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn address_count(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    fn last(&self) -> u32 {
        self.network | !mask(self.prefix)
    }

    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && other.network & mask(self.prefix) == self.network
    }

    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.network <= other.last() && other.network <= self.last()
    }

    /// The `index`-th block of length `/new_prefix` inside this one.
    pub fn subnet(&self, new_prefix: u8, index: u32) -> Option<Ipv4Cidr> {
        if new_prefix < self.prefix || new_prefix > 32 {
            return None;
        }
        let bits = u32::from(new_prefix - self.prefix);
        if bits < 32 && u64::from(index) >= (1u64 << bits) {
            return None;
        }
        let step = if new_prefix == 32 {
            1u64
        } else {
            1u64 << (32 - u32::from(new_prefix))
        };
        let network = u64::from(self.network) + u64::from(index) * step;
        Some(Ipv4Cidr {
            network: u32::try_from(network).ok()?,
            prefix: new_prefix,
        })
    }

    /// Is this inside one of the private ranges AWS recommends for VPCs (RFC 1918, RFC 6598)?
    pub fn is_private(&self) -> bool {
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
        ]
        .iter()
        .filter_map(|range| range.parse::<Ipv4Cidr>().ok())
        .any(|range| range.contains(self))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(text.to_string()))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| CidrError::Syntax(text.to_string()))?;
        if prefix.is_empty()
            || !prefix.bytes().all(|byte| byte.is_ascii_digit())
            || prefix.len() > 3
        {
            return Err(CidrError::Syntax(text.to_string()));
        }
        let prefix: u32 = prefix
            .parse()
            .map_err(|_| CidrError::Syntax(text.to_string()))?;
        let prefix_u8 = u8::try_from(prefix)
            .ok()
            .filter(|p| *p <= 32)
            .ok_or(CidrError::Prefix(prefix))?;
        let network = Ipv4Cidr::new(address, prefix_u8).ok_or(CidrError::Prefix(prefix))?;
        if u32::from(address) != network.network {
            return Err(CidrError::HostBits {
                given: text.to_string(),
                network,
            });
        }
        Ok(network)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(cidr("10.0.0.0/16").to_string(), "10.0.0.0/16");
        assert!(matches!(
            "10.0.0.0".parse::<Ipv4Cidr>(),
            Err(CidrError::Syntax(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Ipv4Cidr>(),
            Err(CidrError::Prefix(33))
        ));
        assert!(matches!(
            "10.0.0.300/16".parse::<Ipv4Cidr>(),
            Err(CidrError::Syntax(_))
        ));
        assert!(matches!(
            "10.0.0.0/+8".parse::<Ipv4Cidr>(),
            Err(CidrError::Syntax(_))
        ));
        match "10.0.1.0/16".parse::<Ipv4Cidr>() {
            Err(CidrError::HostBits { network, .. }) => {
                assert_eq!(network.to_string(), "10.0.0.0/16")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overlap_containment_and_subnets() {
        assert!(cidr("10.0.0.0/16").overlaps(&cidr("10.0.128.0/17")));
        assert!(!cidr("10.0.0.0/17").overlaps(&cidr("10.0.128.0/17")));
        assert!(cidr("10.0.0.0/16").contains(&cidr("10.0.64.0/18")));
        assert!(!cidr("10.0.64.0/18").contains(&cidr("10.0.0.0/16")));
        assert_eq!(
            cidr("10.0.0.0/16").subnet(18, 3).unwrap().to_string(),
            "10.0.192.0/18"
        );
        assert_eq!(cidr("10.0.0.0/16").subnet(18, 4), None);
        assert_eq!(
            cidr("0.0.0.0/0").subnet(32, u32::MAX).unwrap().to_string(),
            "255.255.255.255/32"
        );
        assert!(cidr("10.1.0.0/16").is_private());
        assert!(!cidr("8.8.0.0/16").is_private());
    }
}
