//! CIDR blocks for IPv4 and IPv6, in any spelling AWS accepts.
//!
//! IPv4 octets may carry leading zeros (`000.0.0.0/0`), IPv6 may be compressed or not
//! (`::/0`, `0000::/0`, `0:0:0:0:0:0:0:0/0`). Only the prefix length decides whether a
//! block is the whole internet: `10.0.0.0/0` is as open as `0.0.0.0/0`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Prefix length 0: every address of its family.
    pub fn is_world(&self) -> bool {
        self.prefix == 0
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self.addr, Addr::V6(_))
    }

    pub fn max_prefix(&self) -> u8 {
        if self.is_ipv6() { 128 } else { 32 }
    }

    /// True when every address of `other` is in this block (same family only).
    pub fn contains(&self, other: &Cidr) -> bool {
        if self.is_ipv6() != other.is_ipv6() || self.prefix > other.prefix {
            return false;
        }
        let host_bits = u32::from(self.max_prefix() - self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            !((1u128 << host_bits) - 1)
        };
        (self.bits() & mask) == (other.bits() & mask)
    }

    /// The address as a number, IPv4 in the low 32 bits.
    fn bits(&self) -> u128 {
        match self.addr {
            Addr::V4(a) => u128::from(u32::from(a)),
            Addr::V6(a) => u128::from(a),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Addr::V4(a) => write!(f, "{a}/{}", self.prefix),
            Addr::V6(a) => write!(f, "{a}/{}", self.prefix),
        }
    }
}

/// Parses `address/prefix`. A bare address is not a CIDR block.
pub fn parse(text: &str) -> Result<Cidr, String> {
    let s = text.trim();
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a CIDR block (no /prefix)"))?;
    let prefix = prefix.trim();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` has an invalid prefix length"));
    }
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("`{text}` has an invalid prefix length"))?;
    let addr = addr.trim();
    let addr = if addr.contains(':') {
        Addr::V6(
            addr.parse::<Ipv6Addr>()
                .map_err(|_| format!("`{text}` has an invalid IPv6 address"))?,
        )
    } else {
        Addr::V4(parse_v4(addr).ok_or_else(|| format!("`{text}` has an invalid IPv4 address"))?)
    };
    let cidr = Cidr { addr, prefix };
    if prefix > cidr.max_prefix() {
        return Err(format!(
            "`{text}` has a prefix longer than {}",
            cidr.max_prefix()
        ));
    }
    Ok(cidr)
}

/// Dotted quad, leading zeros allowed (std rejects them; AWS does not).
fn parse_v4(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = p.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// `Fn::Cidr`: the first `count` subnets of `block` with `bits` host bits each.
pub fn subnets(block: &str, count: usize, bits: u8) -> Result<Vec<String>, String> {
    let cidr = parse(block)?;
    let max = cidr.max_prefix();
    if bits == 0 || bits > max || max - bits < cidr.prefix {
        return Err(format!(
            "cannot cut /{} subnets out of {block}",
            max.saturating_sub(bits)
        ));
    }
    let available = 1u128 << u32::from(max - bits - cidr.prefix).min(127);
    if count == 0 || count > 256 || count as u128 > available {
        return Err(format!("cannot cut {count} subnets out of {block}"));
    }
    let new_prefix = max - bits;
    let base: u128 = match cidr.addr {
        Addr::V4(a) => u128::from(u32::from(a)),
        Addr::V6(a) => u128::from(a),
    };
    let host_mask = if u32::from(max - cidr.prefix) >= 128 {
        u128::MAX
    } else {
        (1u128 << (max - cidr.prefix)) - 1
    };
    let network = base & !host_mask;
    Ok((0..count as u128)
        .map(|i| {
            let a = network + (i << bits);
            match cidr.addr {
                Addr::V4(_) => format!("{}/{new_prefix}", Ipv4Addr::from(a as u32)),
                Addr::V6(_) => format!("{}/{new_prefix}", Ipv6Addr::from(a)),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_in_every_spelling() {
        for s in [
            "0.0.0.0/0",
            "10.0.0.0/0",
            "000.000.000.000/00",
            " 0.0.0.0/0 ",
            "::/0",
            "0000::/0",
            "0:0:0:0:0:0:0:0/0",
            "2001:DB8::/0",
            "::ffff:0.0.0.0/0",
        ] {
            let c = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(c.is_world(), "{s}");
        }
    }

    #[test]
    fn not_world() {
        let c = parse("10.0.0.0/8").unwrap();
        assert!(!c.is_world());
        assert_eq!(c.prefix, 8);
        assert!(!c.is_ipv6());
        let c = parse("2001:db8::/32").unwrap();
        assert!(c.is_ipv6());
        assert_eq!(c.to_string(), "2001:db8::/32");
    }

    #[test]
    fn containment() {
        let c = |s: &str| parse(s).unwrap();
        assert!(c("0.0.0.0/0").contains(&c("10.1.0.0/16")));
        assert!(c("10.0.0.0/8").contains(&c("10.1.0.0/16")));
        assert!(c("10.0.0.0/8").contains(&c("10.0.0.0/8")));
        assert!(!c("10.1.0.0/16").contains(&c("10.0.0.0/8")));
        assert!(!c("10.0.0.0/8").contains(&c("11.0.0.0/16")));
        assert!(!c("0.0.0.0/0").contains(&c("::/0")));
        assert!(c("::/0").contains(&c("2001:db8::/32")));
        assert!(c("10.0.0.7/8").contains(&c("10.9.9.9/32")));
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "0.0.0.0",
            "0.0.0.0/",
            "0.0.0.0/33",
            "::/129",
            "1.2.3/8",
            "1.2.3.256/8",
            "x/0",
            "0.0.0.0/-1",
            "0/0",
        ] {
            assert!(parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn subnets_like_fn_cidr() {
        assert_eq!(
            subnets("10.0.0.0/16", 3, 8).unwrap(),
            vec!["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]
        );
        assert_eq!(
            subnets("2001:db8::/56", 2, 64).unwrap(),
            vec!["2001:db8::/64", "2001:db8:0:1::/64"]
        );
        assert!(subnets("10.0.0.0/24", 3, 8).is_err());
    }
}
