//! Attribute plumbing over neli's `Nlattr`: writing typed payloads (host-order integers,
//! big-endian ports, NUL-terminated names, 16-byte addresses) and reading them back
//! with errors that say which attribute of which object was wrong.

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use neli::genl::{AttrTypeBuilder, NlattrBuilder};
use neli::types::{Buffer, GenlBuffer};
use neli::{FromBytesWithInput, ToBytes};

use crate::consts as k;
use crate::types::Family;

/// A list of attributes with raw payloads, as neli carries them.
pub type Attrs = GenlBuffer<u16, Buffer>;

/// A message's bytes did not have the shape the kernel's interface promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {context}: {problem}")]
pub struct DecodeError {
    /// Where: e.g. "service attribute PORT".
    pub context: String,
    /// What: e.g. "expected 2 bytes, got 3".
    pub problem: String,
}

impl DecodeError {
    pub(crate) fn new(context: impl Into<String>, problem: impl Into<String>) -> Self {
        DecodeError {
            context: context.into(),
            problem: problem.into(),
        }
    }
}

/// Building an attribute failed (neli's builders or serializer refused it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {context}: {problem}")]
pub struct EncodeError {
    /// Which attribute.
    pub context: String,
    /// neli's complaint.
    pub problem: String,
}

fn enc_err(context: &str, e: impl std::fmt::Display) -> EncodeError {
    EncodeError {
        context: context.to_string(),
        problem: e.to_string(),
    }
}

/// Appends attributes to a list; `nested` is whether nests carry `NLA_F_NESTED`
/// (user space sets it, the kernel's IPVS code does not).
pub struct Writer {
    attrs: Attrs,
    nested_flag: bool,
}

impl Writer {
    pub fn new(nested_flag: bool) -> Writer {
        Writer {
            attrs: Attrs::new(),
            nested_flag,
        }
    }

    pub fn finish(self) -> Attrs {
        self.attrs
    }

    fn raw(&mut self, ty: u16, nested: bool, payload: Vec<u8>) -> Result<(), EncodeError> {
        let nla_type = AttrTypeBuilder::default()
            .nla_type(ty)
            .nla_nested(nested)
            .build()
            .map_err(|e| enc_err("attribute type", e))?;
        let attr = NlattrBuilder::default()
            .nla_type(nla_type)
            .nla_payload(Buffer::from(payload))
            .build()
            .map_err(|e| enc_err("attribute", e))?;
        self.attrs.push(attr);
        Ok(())
    }

    pub fn bytes(&mut self, ty: impl Into<u16>, payload: &[u8]) -> Result<(), EncodeError> {
        self.raw(ty.into(), false, payload.to_vec())
    }
    pub fn u8(&mut self, ty: impl Into<u16>, v: u8) -> Result<(), EncodeError> {
        self.bytes(ty, &[v])
    }
    pub fn u16(&mut self, ty: impl Into<u16>, v: u16) -> Result<(), EncodeError> {
        self.bytes(ty, &v.to_ne_bytes())
    }
    /// Ports travel big-endian.
    pub fn be16(&mut self, ty: impl Into<u16>, v: u16) -> Result<(), EncodeError> {
        self.bytes(ty, &v.to_be_bytes())
    }
    pub fn u32(&mut self, ty: impl Into<u16>, v: u32) -> Result<(), EncodeError> {
        self.bytes(ty, &v.to_ne_bytes())
    }
    pub fn u64(&mut self, ty: impl Into<u16>, v: u64) -> Result<(), EncodeError> {
        self.bytes(ty, &v.to_ne_bytes())
    }
    /// Names travel NUL-terminated.
    pub fn string(&mut self, ty: impl Into<u16>, s: &str) -> Result<(), EncodeError> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.bytes(ty, &v)
    }
    /// Service and destination addresses travel as a 16-byte `union nf_inet_addr`.
    pub fn inet_addr(&mut self, ty: impl Into<u16>, addr: &IpAddr) -> Result<(), EncodeError> {
        let mut v = [0u8; 16];
        match addr {
            IpAddr::V4(a) => v[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => v.copy_from_slice(&a.octets()),
        }
        self.bytes(ty, &v)
    }
    pub fn nest(&mut self, ty: impl Into<u16>, inner: Writer) -> Result<(), EncodeError> {
        let mut cur = Cursor::new(Vec::new());
        inner
            .attrs
            .to_bytes(&mut cur)
            .map_err(|e| enc_err("nested attributes", e))?;
        let flag = self.nested_flag;
        self.raw(ty.into(), flag, cur.into_inner())
    }
}

/// Parses a list of attributes out of a nest's payload.
pub fn parse_attrs(payload: &[u8], context: &str) -> Result<Attrs, DecodeError> {
    Attrs::from_bytes_with_input(&mut Cursor::new(payload), payload.len())
        .map_err(|e| DecodeError::new(context, format!("malformed attributes: {e}")))
}

/// Reads typed values out of one attribute list; `what` names the object for errors
/// ("service", "destination", …) and `name` maps attribute numbers to names.
pub struct Reader<'a> {
    attrs: &'a Attrs,
    what: &'static str,
    name: fn(u16) -> String,
}

impl<'a> Reader<'a> {
    pub fn new(attrs: &'a Attrs, what: &'static str, name: fn(u16) -> String) -> Reader<'a> {
        Reader { attrs, what, name }
    }

    fn ctx(&self, ty: u16) -> String {
        format!("{} attribute {}", self.what, (self.name)(ty))
    }

    pub fn get(&self, ty: impl Into<u16>) -> Option<&'a [u8]> {
        let ty = ty.into();
        self.attrs
            .iter()
            .find(|a| *a.nla_type().nla_type() == ty)
            .map(|a| a.nla_payload().as_ref())
    }

    pub fn has(&self, ty: impl Into<u16>) -> bool {
        self.get(ty).is_some()
    }

    fn fixed<const N: usize>(&self, ty: u16) -> Result<Option<[u8; N]>, DecodeError> {
        match self.get(ty) {
            None => Ok(None),
            Some(b) => <[u8; N]>::try_from(b).map(Some).map_err(|_| {
                DecodeError::new(self.ctx(ty), format!("expected {N} bytes, got {}", b.len()))
            }),
        }
    }

    fn require<T>(&self, ty: u16, v: Option<T>) -> Result<T, DecodeError> {
        v.ok_or_else(|| DecodeError::new(self.ctx(ty), "missing"))
    }

    pub fn opt_u8(&self, ty: impl Into<u16>) -> Result<Option<u8>, DecodeError> {
        Ok(self.fixed::<1>(ty.into())?.map(|b| b[0]))
    }
    pub fn opt_u16(&self, ty: impl Into<u16>) -> Result<Option<u16>, DecodeError> {
        Ok(self.fixed::<2>(ty.into())?.map(u16::from_ne_bytes))
    }
    pub fn opt_be16(&self, ty: impl Into<u16>) -> Result<Option<u16>, DecodeError> {
        Ok(self.fixed::<2>(ty.into())?.map(u16::from_be_bytes))
    }
    pub fn opt_u32(&self, ty: impl Into<u16>) -> Result<Option<u32>, DecodeError> {
        Ok(self.fixed::<4>(ty.into())?.map(u32::from_ne_bytes))
    }
    pub fn opt_u64(&self, ty: impl Into<u16>) -> Result<Option<u64>, DecodeError> {
        Ok(self.fixed::<8>(ty.into())?.map(u64::from_ne_bytes))
    }
    pub fn u16(&self, ty: impl Into<u16> + Copy) -> Result<u16, DecodeError> {
        self.require(ty.into(), self.opt_u16(ty)?)
    }
    pub fn be16(&self, ty: impl Into<u16> + Copy) -> Result<u16, DecodeError> {
        self.require(ty.into(), self.opt_be16(ty)?)
    }
    pub fn u32(&self, ty: impl Into<u16> + Copy) -> Result<u32, DecodeError> {
        self.require(ty.into(), self.opt_u32(ty)?)
    }

    pub fn opt_string(&self, ty: impl Into<u16>) -> Result<Option<String>, DecodeError> {
        let ty = ty.into();
        let Some(b) = self.get(ty) else {
            return Ok(None);
        };
        let text = b.split(|c| *c == 0).next().unwrap_or_default();
        if text.len() >= k::NAME_MAXLEN {
            return Err(DecodeError::new(self.ctx(ty), "name longer than 15 bytes"));
        }
        String::from_utf8(text.to_vec())
            .map(Some)
            .map_err(|_| DecodeError::new(self.ctx(ty), "not UTF-8"))
    }
    pub fn string(&self, ty: impl Into<u16> + Copy) -> Result<String, DecodeError> {
        self.require(ty.into(), self.opt_string(ty)?)
    }

    /// A 16-byte `nf_inet_addr` (or a bare 4- or 16-byte address), read per `family`.
    pub fn inet_addr(&self, ty: impl Into<u16>, family: Family) -> Result<IpAddr, DecodeError> {
        let ty = ty.into();
        let b = self.require(ty, self.get(ty))?;
        match (family, b.len()) {
            (Family::V4, 4 | 16) => Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            (Family::V6, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                Ok(IpAddr::V6(Ipv6Addr::from(o)))
            }
            (_, n) => Err(DecodeError::new(
                self.ctx(ty),
                format!("{n} bytes is not an {family} address"),
            )),
        }
    }

    /// The attributes nested in `ty`, if present.
    pub fn opt_nested(&self, ty: impl Into<u16>) -> Result<Option<Attrs>, DecodeError> {
        let ty = ty.into();
        match self.get(ty) {
            None => Ok(None),
            Some(b) => parse_attrs(b, &self.ctx(ty)).map(Some),
        }
    }
    pub fn nested(&self, ty: impl Into<u16> + Copy) -> Result<Attrs, DecodeError> {
        self.require(ty.into(), self.opt_nested(ty)?)
    }
}

/// Reads an address family attribute.
pub fn family(
    r: &Reader<'_>,
    ty: impl Into<u16> + Copy,
    what: &str,
) -> Result<Family, DecodeError> {
    match r.u16(ty)? {
        k::AF_INET => Ok(Family::V4),
        k::AF_INET6 => Ok(Family::V6),
        other => Err(DecodeError::new(
            format!("{what} address family"),
            format!("unknown family {other}"),
        )),
    }
}

/// The kernel's number of a family.
pub fn af(family: Family) -> u16 {
    match family {
        Family::V4 => k::AF_INET,
        Family::V6 => k::AF_INET6,
    }
}
