//! Record framing shared by WAL segments and snapshot files.
//!
//! ```text
//! | payload_len: u32 LE | crc32c(payload_len bytes): u32 LE | crc32c(payload): u32 LE | payload |
//! ```
//!
//! The length has its own checksum, so a flipped bit in a length can never make a
//! record look like a torn tail and silently truncate synced data after it. A frame
//! that is *incomplete* at the end of the file, or followed only by zero bytes (a
//! file extended but never written, as after a power cut), is a torn tail; anything
//! else that fails a checksum is corruption.

use thiserror::Error;

pub const HEADER_LEN: usize = 12;
/// Upper bound on one record, well above the largest snapshot we expect.
pub const MAX_PAYLOAD_LEN: u32 = 1 << 30;

/// Appends one framed record holding `payload` to `buf`.
pub fn encode_into(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("record payload over 4 GiB");
    assert!(
        len <= MAX_PAYLOAD_LEN,
        "record payload over the 1 GiB limit"
    );
    let len_bytes = len.to_le_bytes();
    buf.extend_from_slice(&len_bytes);
    buf.extend_from_slice(&crc32c::crc32c(&len_bytes).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Why a frame at some offset could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The file ends inside this frame (or only zeros follow): an interrupted write.
    #[error("torn record at offset {offset}")]
    Torn { offset: u64 },
    /// A complete frame failed its checksum: the data is damaged.
    #[error("bad record at offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
}

/// Reads the frame starting at `offset` of `data`; returns its payload and the
/// offset of the next frame.
pub fn decode_at(data: &[u8], offset: usize) -> Result<(&[u8], usize), FrameError> {
    let rest = &data[offset..];
    let at = offset as u64;
    let zeros_only = |from: &[u8]| from.iter().all(|&b| b == 0);
    if rest.len() < HEADER_LEN {
        return Err(FrameError::Torn { offset: at });
    }
    let len_bytes: [u8; 4] = rest[0..4].try_into().expect("4 bytes");
    let len_crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let data_crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
    if crc32c::crc32c(&len_bytes) != len_crc {
        if zeros_only(rest) {
            return Err(FrameError::Torn { offset: at });
        }
        return Err(FrameError::Corrupt {
            offset: at,
            reason: "length checksum mismatch".into(),
        });
    }
    let len = u32::from_le_bytes(len_bytes);
    if len > MAX_PAYLOAD_LEN {
        return Err(FrameError::Corrupt {
            offset: at,
            reason: format!("length {len} over limit"),
        });
    }
    let end = HEADER_LEN + len as usize;
    if rest.len() < end {
        return Err(FrameError::Torn { offset: at });
    }
    let payload = &rest[HEADER_LEN..end];
    if crc32c::crc32c(payload) != data_crc {
        // A zero-filled payload at the very end is a write that never reached the
        // medium; any other mismatch is damage.
        if zeros_only(payload) && rest.len() == end {
            return Err(FrameError::Torn { offset: at });
        }
        return Err(FrameError::Corrupt {
            offset: at,
            reason: "payload checksum mismatch".into(),
        });
    }
    Ok((payload, offset + end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_records() -> Vec<u8> {
        let mut buf = Vec::new();
        encode_into(&mut buf, b"first");
        encode_into(&mut buf, b"second record");
        buf
    }

    #[test]
    fn round_trip() {
        let buf = two_records();
        let (p1, next) = decode_at(&buf, 0).unwrap();
        assert_eq!(p1, b"first");
        let (p2, end) = decode_at(&buf, next).unwrap();
        assert_eq!(p2, b"second record");
        assert_eq!(end, buf.len());
    }

    #[test]
    fn every_prefix_cut_is_torn_not_corrupt() {
        let buf = two_records();
        let (_, second) = decode_at(&buf, 0).unwrap();
        for cut in second + 1..buf.len() {
            assert_eq!(
                decode_at(&buf[..cut], second),
                Err(FrameError::Torn {
                    offset: second as u64
                }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn any_flipped_bit_is_corruption() {
        let buf = two_records();
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                let first = decode_at(&bad, 0);
                let outcome = first.and_then(|(_, next)| decode_at(&bad, next).map(|_| ()));
                assert!(
                    matches!(outcome, Err(FrameError::Corrupt { .. })),
                    "flip at byte {byte} bit {bit} gave {outcome:?}"
                );
            }
        }
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut buf = two_records();
        let len = buf.len();
        buf.extend_from_slice(&[0u8; 40]);
        assert_eq!(
            decode_at(&buf, len),
            Err(FrameError::Torn { offset: len as u64 })
        );
    }
}
