//! IP address management: subnets, addresses inside a subnet, published ports.
//!
//! Pure bookkeeping with no I/O, so the leader's allocator can rebuild it from
//! the store whenever it starts (after a failover) and the rules can be tested
//! exhaustively:
//!
//! - [`Subnet`]: an IPv4 CIDR block.
//! - [`SubnetPools`]: the cluster's default address pools (`10.0.0.0/8` cut
//!   into `/24`s unless `docker swarm init --default-addr-pool
//!   --default-addr-pool-mask-length` said otherwise) and every subnet in use,
//!   whether picked from the pools or given by the user; no two overlap.
//! - [`AddressPool`]: the addresses of one subnet, minus its network address,
//!   its broadcast address and its gateway (the first usable address unless
//!   one is given), handed out lowest first from the allocation range.
//! - [`PortAllocator`]: published ports per protocol, explicit ones reserved,
//!   the others picked from [`DYNAMIC_PORTS`] (30000–32767).
//!
//! Every operation either succeeds or changes nothing and returns an
//! [`IpamError`] that names the subnet, address, pool or port at fault. IPv6 is
//! not handled: an IPv6 subnet is refused with `InvalidSubnet`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

use swarm_core::types::Protocol;

/// The ports picked for published ports given without a number (as Docker).
pub const DYNAMIC_PORTS: RangeInclusive<u16> = 30000..=32767;

/// What IPAM refuses. Each variant is about the caller's input or about a pool
/// being full: nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// A subnet (or pool) does not parse or cannot be used.
    #[error("invalid subnet {value:?}: {reason}")]
    InvalidSubnet {
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An address does not parse or cannot be used where it was given.
    #[error("invalid address {value:?}: {reason}")]
    InvalidAddress {
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A subnet overlaps one already in use.
    #[error("subnet {subnet} overlaps with subnet {other}, which is already in use")]
    Overlap {
        /// The subnet asked for.
        subnet: Subnet,
        /// The subnet in use it overlaps.
        other: Subnet,
    },
    /// No subnet of the configured size is left in the pools.
    #[error("no /{size} subnet left in the address pools {pools}")]
    PoolExhausted {
        /// The pools, comma separated.
        pools: String,
        /// The subnet size (prefix length).
        size: u8,
    },
    /// Every address of a subnet's range is in use.
    #[error("no free address left in subnet {subnet}")]
    SubnetFull {
        /// The subnet.
        subnet: Subnet,
    },
    /// An address is held already.
    #[error("address {addr} is already in use in subnet {subnet}")]
    AddressInUse {
        /// The address.
        addr: Ipv4Addr,
        /// Its subnet.
        subnet: Subnet,
    },
    /// A published port is held by someone else.
    #[error("port '{port}' ({protocol}) is already in use by {owner}")]
    PortInUse {
        /// The port.
        port: u16,
        /// Its protocol.
        protocol: Protocol,
        /// Who holds it (the allocator's owner key, e.g. a service ID).
        owner: String,
    },
    /// Every port of [`DYNAMIC_PORTS`] is in use for a protocol.
    #[error("no free port left in the range 30000-32767 for {protocol}")]
    PortsExhausted {
        /// The protocol.
        protocol: Protocol,
    },
    /// A port number outside 1–65535.
    #[error("invalid port {port}: must be between 1 and 65535")]
    InvalidPort {
        /// The number given.
        port: u32,
    },
}

/// Result of IPAM operations.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;

/// An IPv4 CIDR block, e.g. `10.0.0.0/24` (host bits zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// The block `addr/prefix`; `addr` must have no host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet> {
        let value = || format!("{addr}/{prefix}");
        if prefix > 32 {
            return Err(IpamError::InvalidSubnet {
                value: value(),
                reason: "prefix length must be at most 32".into(),
            });
        }
        let base = u32::from(addr);
        if base & !mask(prefix) != 0 {
            return Err(IpamError::InvalidSubnet {
                value: value(),
                reason: format!(
                    "host bits are set (the network is {}/{prefix})",
                    Ipv4Addr::from(base & mask(prefix))
                ),
            });
        }
        Ok(Subnet { base, prefix })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast (last) address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last())
    }

    /// Number of addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// Whether `addr` is in the block.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        a >= self.first() && a <= self.last()
    }

    /// Whether `other` lies wholly inside this block.
    pub fn covers(&self, other: &Subnet) -> bool {
        other.first() >= self.first() && other.last() <= self.last()
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// `addr` with this block's prefix length, e.g. `10.0.0.5/24`.
    pub fn with_prefix(&self, addr: Ipv4Addr) -> String {
        format!("{addr}/{}", self.prefix)
    }

    fn first(&self) -> u32 {
        self.base
    }

    fn last(&self) -> u32 {
        self.base | !mask(self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Subnet> {
        let bad = |reason: &str| IpamError::InvalidSubnet {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected CIDR form ADDRESS/PREFIX, e.g. 10.0.0.0/24"))?;
        if addr.contains(':') {
            return Err(bad("IPv6 subnets are not supported"));
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length is not a number"))?;
        Subnet::new(addr, prefix).map_err(|e| match e {
            IpamError::InvalidSubnet { reason, .. } => bad(&reason),
            e => e,
        })
    }
}

/// Parses an address given with or without a prefix length (`10.0.0.1`,
/// `10.0.0.1/24`).
pub fn parse_addr(s: &str) -> Result<Ipv4Addr> {
    let a = s.trim().split('/').next().unwrap_or_default();
    a.parse().map_err(|_| IpamError::InvalidAddress {
        value: s.to_string(),
        reason: "not an IPv4 address".into(),
    })
}

/// The subnets in use and the pools new ones are cut from.
#[derive(Clone, Debug)]
pub struct SubnetPools {
    pools: Vec<Subnet>,
    size: u8,
    used: BTreeSet<Subnet>,
}

impl SubnetPools {
    /// Pools given as CIDR strings, cut into subnets of prefix length `size`.
    /// The pools must not overlap each other and `size` must be at least each
    /// pool's prefix length and at most 29 (room for a gateway and a task).
    pub fn new(pools: &[String], size: u32) -> Result<SubnetPools> {
        if pools.is_empty() {
            return Err(IpamError::InvalidSubnet {
                value: String::new(),
                reason: "at least one default address pool is needed".into(),
            });
        }
        let mut parsed: Vec<Subnet> = Vec::new();
        for p in pools {
            let s: Subnet = p.parse()?;
            if u32::from(s.prefix) > size || size > 29 {
                return Err(IpamError::InvalidSubnet {
                    value: p.clone(),
                    reason: format!(
                        "subnet size /{size} must be between the pool's /{} and /29",
                        s.prefix
                    ),
                });
            }
            if let Some(o) = parsed.iter().find(|o| o.overlaps(&s)) {
                return Err(IpamError::Overlap {
                    subnet: s,
                    other: *o,
                });
            }
            parsed.push(s);
        }
        Ok(SubnetPools {
            pools: parsed,
            size: size as u8,
            used: BTreeSet::new(),
        })
    }

    /// The pools.
    pub fn pools(&self) -> &[Subnet] {
        &self.pools
    }

    /// The prefix length of subnets cut from the pools.
    pub fn size(&self) -> u8 {
        self.size
    }

    /// Every subnet in use.
    pub fn used(&self) -> impl Iterator<Item = &Subnet> {
        self.used.iter()
    }

    /// The first free subnet of the configured size, in pool order; it is in
    /// use from now on.
    pub fn allocate(&mut self) -> Result<Subnet> {
        let s = self.peek()?;
        self.used.insert(s);
        Ok(s)
    }

    /// The subnet [`allocate`](SubnetPools::allocate) would return, without
    /// taking it.
    pub fn peek(&self) -> Result<Subnet> {
        let block = 1u64 << (32 - self.size);
        for pool in &self.pools {
            let end = u64::from(pool.last());
            let mut cand = u64::from(pool.first());
            while cand + block - 1 <= end {
                let c = Subnet {
                    base: cand as u32,
                    prefix: self.size,
                };
                match self.used.iter().find(|u| u.overlaps(&c)) {
                    None => return Ok(c),
                    Some(u) => {
                        let next = u64::from(u.last()).max(u64::from(c.last())) + 1;
                        cand = next.div_ceil(block) * block;
                    }
                }
            }
        }
        Err(IpamError::PoolExhausted {
            pools: self
                .pools
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            size: self.size,
        })
    }

    /// Takes exactly `subnet` (a user's choice, or one found in the store),
    /// inside the pools or not. Fails with `Overlap` naming both subnets when it
    /// overlaps one in use (the same subnet included).
    pub fn reserve(&mut self, subnet: Subnet) -> Result<()> {
        self.check(subnet)?;
        self.used.insert(subnet);
        Ok(())
    }

    /// Whether [`reserve`](SubnetPools::reserve) would accept `subnet`.
    pub fn check(&self, subnet: Subnet) -> Result<()> {
        match self.used.iter().find(|u| u.overlaps(&subnet)) {
            Some(o) => Err(IpamError::Overlap { subnet, other: *o }),
            None => Ok(()),
        }
    }

    /// Gives `subnet` back; false if it was not in use.
    pub fn release(&mut self, subnet: &Subnet) -> bool {
        self.used.remove(subnet)
    }
}

/// The addresses of one subnet.
#[derive(Clone, Debug)]
pub struct AddressPool {
    subnet: Subnet,
    range: Subnet,
    gateway: Ipv4Addr,
    used: BTreeSet<u32>,
    /// Every allocatable address below it is in use.
    hint: u32,
}

impl AddressPool {
    /// The addresses of `subnet` (at most a /30), handed out from `range`
    /// (default: the whole subnet), with `gateway` (default: the first usable
    /// address) kept out.
    pub fn new(
        subnet: Subnet,
        range: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<AddressPool> {
        if subnet.prefix > 30 {
            return Err(IpamError::InvalidSubnet {
                value: subnet.to_string(),
                reason: "too small: at least a /30 is needed".into(),
            });
        }
        let range = range.unwrap_or(subnet);
        if !subnet.covers(&range) {
            return Err(IpamError::InvalidSubnet {
                value: range.to_string(),
                reason: format!("the IP range is not inside subnet {subnet}"),
            });
        }
        let gateway = gateway.unwrap_or(Ipv4Addr::from(subnet.first() + 1));
        if !subnet.contains(gateway) || gateway == subnet.network() || gateway == subnet.broadcast()
        {
            return Err(IpamError::InvalidAddress {
                value: gateway.to_string(),
                reason: format!("the gateway must be a host address of subnet {subnet}"),
            });
        }
        let mut pool = AddressPool {
            subnet,
            range,
            gateway,
            used: BTreeSet::new(),
            hint: 0,
        };
        pool.hint = pool.lowest();
        pool.used.insert(u32::from(gateway));
        Ok(pool)
    }

    /// The subnet.
    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// The allocation range.
    pub fn range(&self) -> Subnet {
        self.range
    }

    /// The gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Addresses in use, the gateway included.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    fn lowest(&self) -> u32 {
        self.range.first().max(self.subnet.first() + 1)
    }

    fn highest(&self) -> u32 {
        self.range.last().min(self.subnet.last() - 1)
    }

    /// The lowest free address of the range; it is in use from now on.
    pub fn allocate(&mut self) -> Result<Ipv4Addr> {
        let hi = self.highest();
        let mut a = u64::from(self.hint.max(self.lowest()));
        for u in self.used.range(a as u32..) {
            if u64::from(*u) != a {
                break;
            }
            a += 1;
        }
        if a > u64::from(hi) {
            return Err(IpamError::SubnetFull {
                subnet: self.subnet,
            });
        }
        let a = a as u32;
        self.used.insert(a);
        self.hint = a.saturating_add(1);
        Ok(Ipv4Addr::from(a))
    }

    /// Takes exactly `addr` (a static address, or one found in the store). It
    /// must be a host address of the subnet (inside the range or not).
    pub fn reserve(&mut self, addr: Ipv4Addr) -> Result<()> {
        if !self.subnet.contains(addr)
            || addr == self.subnet.network()
            || addr == self.subnet.broadcast()
        {
            return Err(IpamError::InvalidAddress {
                value: addr.to_string(),
                reason: format!("not a host address of subnet {}", self.subnet),
            });
        }
        if !self.used.insert(u32::from(addr)) {
            return Err(IpamError::AddressInUse {
                addr,
                subnet: self.subnet,
            });
        }
        Ok(())
    }

    /// Gives `addr` back; false if it was not in use or is the gateway.
    pub fn release(&mut self, addr: Ipv4Addr) -> bool {
        if addr == self.gateway {
            return false;
        }
        let a = u32::from(addr);
        let freed = self.used.remove(&a);
        if freed {
            self.hint = self.hint.min(a);
        }
        freed
    }

    /// Whether `addr` is in use.
    pub fn is_used(&self, addr: Ipv4Addr) -> bool {
        self.used.contains(&u32::from(addr))
    }
}

/// Published ports, per protocol, each with its owner (e.g. a service ID).
#[derive(Clone, Debug, Default)]
pub struct PortAllocator {
    used: BTreeMap<(Protocol, u16), String>,
}

impl PortAllocator {
    /// No port in use.
    pub fn new() -> PortAllocator {
        PortAllocator::default()
    }

    /// Takes `port` for `owner`; fine if `owner` holds it already. Fails with
    /// `PortInUse` naming the owner when someone else holds it.
    pub fn reserve(&mut self, protocol: Protocol, port: u32, owner: &str) -> Result<()> {
        let p = valid_port(port)?;
        match self.used.get(&(protocol, p)) {
            Some(o) if o != owner => Err(IpamError::PortInUse {
                port: p,
                protocol,
                owner: o.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                self.used.insert((protocol, p), owner.to_string());
                Ok(())
            }
        }
    }

    /// The lowest free port of [`DYNAMIC_PORTS`] for `protocol`, now held by
    /// `owner`.
    pub fn allocate(&mut self, protocol: Protocol, owner: &str) -> Result<u16> {
        let p = DYNAMIC_PORTS
            .clone()
            .find(|p| !self.used.contains_key(&(protocol, *p)))
            .ok_or(IpamError::PortsExhausted { protocol })?;
        self.used.insert((protocol, p), owner.to_string());
        Ok(p)
    }

    /// Gives `port` back; returns who held it.
    pub fn release(&mut self, protocol: Protocol, port: u16) -> Option<String> {
        self.used.remove(&(protocol, port))
    }

    /// Who holds `port`.
    pub fn owner(&self, protocol: Protocol, port: u16) -> Option<&str> {
        self.used.get(&(protocol, port)).map(String::as_str)
    }

    /// How many ports of [`DYNAMIC_PORTS`] are free for `protocol`.
    pub fn free_dynamic(&self, protocol: Protocol) -> usize {
        let used = self
            .used
            .range((protocol, *DYNAMIC_PORTS.start())..=(protocol, *DYNAMIC_PORTS.end()))
            .count();
        DYNAMIC_PORTS.len() - used
    }
}

fn valid_port(port: u32) -> Result<u16> {
    match u16::try_from(port) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(IpamError::InvalidPort { port }),
    }
}

#[cfg(test)]
mod tests;
