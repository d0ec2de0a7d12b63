//! A pixel grid as a `data:image/png` URL, for charts with too many cells to draw one SVG element
//! each: a 30 × 576 heatmap is 17 280 `<rect>`s (1.4 MB of markup a browser parses and lays out
//! on its main thread), but one `<image>` of 52 KB.
//!
//! The PNG is truecolour, 8 bits, unfiltered, and its zlib stream uses *stored* deflate blocks
//! (no compression): valid for every PNG reader, and small enough at these sizes without a
//! compressor.

/// `rgb` holds `width × height` pixels, row by row, three bytes each.
pub fn png_data_url(width: usize, height: usize, rgb: &[u8]) -> String {
    assert_eq!(rgb.len(), width * height * 3, "png_data_url: {width} × {height} pixels need {} bytes", width * height * 3);
    format!("data:image/png;base64,{}", base64(&png(width, height, rgb)))
}

fn png(width: usize, height: usize, rgb: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(width as u32).to_be_bytes());
    header.extend_from_slice(&(height as u32).to_be_bytes());
    // 8 bits per sample, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    // Each scanline starts with its filter type: 0, none.
    let mut raw = Vec::with_capacity(height * (1 + width * 3));
    for row in rgb.chunks(width * 3).take(height) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored deflate blocks (at most 65 535 bytes each).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    // CMF: deflate, 32 KiB window; FLG: no dictionary, check bits making CMF·256+FLG a multiple of 31.
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let n = (u32::from(group[0]) << 16) | (u32::from(*group.get(1).unwrap_or(&0)) << 8) | u32::from(*group.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unbase64(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let values: Vec<u32> = text.bytes().filter(|&b| b != b'=').map(|b| ALPHABET.iter().position(|&a| a == b).unwrap() as u32).collect();
        let mut out = Vec::new();
        for group in values.chunks(4) {
            let n = group.iter().enumerate().fold(0u32, |n, (i, v)| n | v << (18 - 6 * i));
            out.extend((0..group.len() - 1).map(|i| (n >> (16 - 8 * i)) as u8));
        }
        out
    }

    #[test]
    fn checksums_match_their_published_values() {
        // The CRC-32 and Adler-32 check values of the ASCII digits "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"123456789"), 0x091E_01DE);
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }

    /// Reads the PNG back — signature, chunk CRCs, header, the stored blocks, Adler-32 — and
    /// returns `(width, height, rgb)`.
    fn read_png(png: &[u8]) -> (usize, usize, Vec<u8>) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let (mut at, mut header, mut idat) = (8, None, Vec::new());
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let body = &png[at + 4..at + 8 + len];
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
            assert_eq!(crc32(body), crc, "chunk CRC");
            match &body[..4] {
                b"IHDR" => header = Some(body[4..].to_vec()),
                b"IDAT" => idat.extend_from_slice(&body[4..]),
                b"IEND" => {}
                other => panic!("unexpected chunk {other:?}"),
            }
            at += 12 + len;
        }
        let header = header.unwrap();
        let width = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
        let height = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        assert_eq!(&header[8..], &[8, 2, 0, 0, 0]);
        assert_eq!((u16::from(idat[0]) << 8 | u16::from(idat[1])) % 31, 0, "zlib header check");
        let (mut at, mut raw) = (2, Vec::new());
        loop {
            let last = idat[at] & 1 == 1;
            assert_eq!(idat[at] >> 1, 0, "stored block");
            let len = u16::from_le_bytes([idat[at + 1], idat[at + 2]]);
            assert_eq!(!len, u16::from_le_bytes([idat[at + 3], idat[at + 4]]));
            raw.extend_from_slice(&idat[at + 5..at + 5 + len as usize]);
            at += 5 + len as usize;
            if last {
                break;
            }
        }
        assert_eq!(u32::from_be_bytes(idat[at..at + 4].try_into().unwrap()), adler32(&raw));
        let rgb = raw.chunks(1 + width * 3).flat_map(|line| {
            assert_eq!(line[0], 0, "filter type");
            line[1..].to_vec()
        });
        (width, height, rgb.collect())
    }

    #[test]
    fn pixels_read_back_from_the_data_url_including_several_deflate_blocks() {
        // 300 × 80 pixels: 72 080 bytes of scanlines, two stored blocks.
        let (width, height) = (300, 80);
        let rgb: Vec<u8> = (0..width * height * 3).map(|i| (i * 7 % 251) as u8).collect();
        let url = png_data_url(width, height, &rgb);
        let png = unbase64(url.strip_prefix("data:image/png;base64,").unwrap());
        assert_eq!(read_png(&png), (width, height, rgb));
    }
}
