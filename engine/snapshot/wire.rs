//! The protobuf wire format, read: the fields of one message, one at a time, without a
//! schema. etcd's revision records and Kubernetes' stored objects are both read with it.

/// One field's value as the wire carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of a message, in the order written: `(field number, value)`; `Err(())` once,
/// then nothing, when the bytes are not a well-formed message.
pub struct Fields<'a> {
    rest: &'a [u8],
}

pub fn fields(msg: &[u8]) -> Fields<'_> {
    Fields { rest: msg }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.read();
        if item.is_none() {
            self.rest = &[];
        }
        Some(item.ok_or(()))
    }
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Option<(u32, Wire<'a>)> {
        let (tag, rest) = varint(self.rest)?;
        let number = u32::try_from(tag >> 3).ok().filter(|&n| n > 0)?;
        let (value, rest) = match tag & 7 {
            0 => {
                let (v, rest) = varint(rest)?;
                (Wire::Varint(v), rest)
            }
            1 => {
                let b = rest.get(..8)?;
                (
                    Wire::Fixed64(u64::from_le_bytes(b.try_into().ok()?)),
                    &rest[8..],
                )
            }
            2 => {
                let (len, rest) = varint(rest)?;
                let len = usize::try_from(len).ok()?;
                (Wire::Bytes(rest.get(..len)?), &rest[len..])
            }
            5 => {
                let b = rest.get(..4)?;
                (
                    Wire::Fixed32(u32::from_le_bytes(b.try_into().ok()?)),
                    &rest[4..],
                )
            }
            _ => return None,
        };
        self.rest = rest;
        Some((number, value))
    }
}

/// The first length-delimited field `field` of a message (mvccpb.KeyValue.key is 1).
pub fn bytes_field(msg: &[u8], field: u32) -> Option<&[u8]> {
    fields(msg).find_map(|f| match f {
        Ok((n, Wire::Bytes(b))) if n == field => Some(Some(b)),
        Ok(_) => None,
        Err(()) => Some(None),
    })?
}

pub fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_wire_type_and_stops_at_damage() {
        // 1: varint 150, 2: bytes "hi", 3: fixed64 1, 4: fixed32 2
        let msg = [
            0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0,
        ];
        let got: Vec<_> = fields(&msg).collect();
        assert_eq!(
            got,
            [
                Ok((1, Wire::Varint(150))),
                Ok((2, Wire::Bytes(b"hi"))),
                Ok((3, Wire::Fixed64(1))),
                Ok((4, Wire::Fixed32(2))),
            ]
        );
        assert_eq!(bytes_field(&msg, 2), Some(&b"hi"[..]));
        assert_eq!(bytes_field(&msg, 9), None);
        // A length running past the end: one error, then the end.
        let cut = [0x12, 5, b'h'];
        assert_eq!(fields(&cut).collect::<Vec<_>>(), [Err(())]);
        assert_eq!(bytes_field(&cut, 2), None);
    }
}
