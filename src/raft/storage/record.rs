//! Record framing shared by WAL segments and snapshot files.
//!
//! ```text
//! | payload_len: u32 LE | crc32c(payload_len bytes): u32 LE | crc32c(payload): u32 LE | payload |
//! ```
//!
//! The length has its own checksum, so a flipped bit in a length can never make a
//! record look like a torn tail and silently truncate synced data after it. A frame
//! that is *incomplete* at the end of the file, or followed only by zero bytes (a
//! file extended but never written, as after a power cut), is a torn tail; so is a
//! frame that fails a checksum where the file is zeros from a sector boundary
//! inside the frame to its end: a write into reserved space (see
//! `Disk::reserve`) whose last sectors never reached the medium. Anything else
//! that fails a checksum is corruption — a flipped bit in the last record leaves
//! no zero sector behind it.

use thiserror::Error;

pub const HEADER_LEN: usize = 12;
/// The unit a device writes whole: a torn write loses whole sectors.
const SECTOR: u64 = 512;
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

/// Reads the frame starting at `offset` of `data`, a whole file; returns its
/// payload and the offset of the next frame.
pub fn decode_at(data: &[u8], offset: usize) -> Result<(&[u8], usize), FrameError> {
    decode_in_file(data, offset, 0)
}

/// [`decode_at`] over the part of a file from byte `base` on (sectors are
/// counted from the file's start).
pub fn decode_in_file(data: &[u8], offset: usize, base: u64) -> Result<(&[u8], usize), FrameError> {
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
        // Zeros from the frame's start on count too: a write that never landed.
        if unwritten_from_inside(data, base, offset, offset + HEADER_LEN) {
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
        if (zeros_only(payload) && rest.len() == end)
            || unwritten_from_inside(data, base, offset, offset + end)
        {
            return Err(FrameError::Torn { offset: at });
        }
        return Err(FrameError::Corrupt {
            offset: at,
            reason: "payload checksum mismatch".into(),
        });
    }
    Ok((payload, offset + end))
}

/// True when `data` (the file from byte `base` on) is zeros from the frame's
/// start, or from a sector boundary inside the frame `from..to`, to its end.
fn unwritten_from_inside(data: &[u8], base: u64, from: usize, to: usize) -> bool {
    let zeros_from = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let first_unwritten = if zeros_from <= from {
        from
    } else {
        let file_offset = base + zeros_from as u64;
        (file_offset.div_ceil(SECTOR) * SECTOR - base) as usize
    };
    first_unwritten < to
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

    /// A frame of `len` payload bytes at file offset 700, and 4 KiB of reserved
    /// zeros after it.
    fn frame_in_reserved_space(len: usize) -> (Vec<u8>, usize, usize) {
        let mut buf = vec![7u8; 700];
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        encode_into(&mut buf, &payload);
        let end = buf.len();
        buf.resize(end + 4096, 0);
        (buf, 700, end)
    }

    #[test]
    fn a_frame_whose_last_sectors_are_zeros_before_reserved_space_is_torn() {
        let (buf, start, end) = frame_in_reserved_space(2000);
        assert!(decode_at(&buf, start).is_ok());
        // Every sector boundary inside the frame, the header's included.
        for cut in (1024..end).step_by(512) {
            let mut torn = buf.clone();
            torn[cut..].fill(0);
            assert_eq!(
                decode_at(&torn, start),
                Err(FrameError::Torn {
                    offset: start as u64
                }),
                "zeros from {cut}"
            );
            // The same bytes read from an offset inside the file.
            let base = 600;
            assert_eq!(
                decode_in_file(&torn[base..], start - base, base as u64),
                Err(FrameError::Torn {
                    offset: (start - base) as u64
                }),
                "zeros from {cut}, read from {base}"
            );
        }
    }

    #[test]
    fn a_damaged_frame_before_reserved_space_is_corruption() {
        let (buf, start, end) = frame_in_reserved_space(2000);
        // A flipped bit anywhere in the frame: no sector of it became zeros.
        for byte in (start..end).step_by(97) {
            let mut bad = buf.clone();
            bad[byte] ^= 0x10;
            assert!(
                matches!(decode_at(&bad, start), Err(FrameError::Corrupt { .. })),
                "flip at {byte}"
            );
        }
        // Zeros from inside a sector, not from its boundary: not a lost sector.
        let mut bad = buf.clone();
        bad[end - 5..end].fill(0);
        assert!(matches!(
            decode_at(&bad, start),
            Err(FrameError::Corrupt { .. })
        ));
        // A lost sector followed by data is not a torn tail either.
        let mut bad = buf.clone();
        bad[1024..1536].fill(0);
        assert!(matches!(
            decode_at(&bad, start),
            Err(FrameError::Corrupt { .. })
        ));
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
