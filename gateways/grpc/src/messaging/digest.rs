//! The body digest of delivered messages: MD5 (RFC 1321) as upper-case hex, the one form that
//! the Java, Python and Node SDKs all accept (Python compares case-sensitively with upper-case
//! hex; Node expects CRC32 in decimal, so no CRC32 form suits both). Computed over the body
//! as delivered (still compressed for GZIP bodies, as the Java SDK verifies before inflating).
//!
//! MD5 comes from the `md-5` crate (RustCrypto); it is not used for security, only as the
//! checksum the protocol asks for. Pure functions.

use md5::{Digest, Md5};

/// Upper-case hex MD5 of `data`.
pub(super) fn md5_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    Md5::digest(data)
        .iter()
        .fold(String::with_capacity(32), |mut out, b| {
            let _ = write!(out, "{b:02X}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1321_vectors() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "D41D8CD98F00B204E9800998ECF8427E"),
            (b"a", "0CC175B9C0F1B6A831C399E269772661"),
            (b"abc", "900150983CD24FB0D6963F7D28E17F72"),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57EDF4A22BE3C955AC49DA2E2107B67A",
            ),
            (
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "D174AB98D277D9F5A5611C2C9F419D9F",
            ),
        ];
        for (data, want) in cases {
            assert_eq!(md5_hex(data), want, "{}", String::from_utf8_lossy(data));
        }
        // Around the padding boundary.
        assert_eq!(md5_hex(&[b'x'; 55]), "04364420E25C512FD958A70738AA8F72");
        assert_eq!(md5_hex(&[b'x'; 56]), "668A72D5BA17F08E62DABCAFAD6DB14B");
        assert_eq!(md5_hex(&[b'x'; 64]), "C1BB4F81D892B2D57947682AEB252456");
    }
}
