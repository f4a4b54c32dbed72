//! Hostile images for tests (this crate's and the end-to-end suite's). Not used at run time.

/// A decompression bomb: a valid PNG (signature, IHDR claiming `w`x`h`, empty IDAT, IEND, good
/// CRCs) of a few dozen bytes.
pub fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Rewrites the frame header (SOF0) of a real JPEG to claim other dimensions.
pub fn jpeg_with_dims(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let pos = out
        .windows(2)
        .position(|p| p[0] == 0xFF && (p[1] == 0xC0 || p[1] == 0xC2))
        .expect("SOF marker");
    out[pos + 5..pos + 7].copy_from_slice(&h.to_be_bytes());
    out[pos + 7..pos + 9].copy_from_slice(&w.to_be_bytes());
    out
}
