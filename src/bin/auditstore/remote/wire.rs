//! Frames on the admin socket: a kind byte, the payload's length (u32, big
//! endian), the payload. docs/admin-socket.md says what each kind carries.

use std::io::{self, Read, Write};

/// Version of the header and frames; a server refuses any other.
pub const VERSION: u64 = 1;

// Client to server.
/// The first frame: the command, as JSON (`Header`).
pub const HEADER: u8 = b'H';
/// Bytes of the client's stdin; an empty payload: the end of it.
pub const STDIN: u8 = b'I';
/// The client's stdout is closed (a broken pipe): writes to it now fail.
pub const STDOUT_CLOSED: u8 = b'C';

// Server to client.
/// Bytes for the client's stdout.
pub const STDOUT: u8 = b'O';
/// Bytes for the client's stderr.
pub const STDERR: u8 = b'E';
/// The command reads stdin: the client starts sending it.
pub const WANT_STDIN: u8 = b'R';
/// The command is done: one byte, its exit status. The last frame.
pub const EXIT: u8 = b'X';

/// The largest payload either side sends or accepts.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// What the client asks for.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub version: u64,
    /// The command line after the program's name.
    pub argv: Vec<String>,
    /// The client's working directory (absolute).
    pub cwd: String,
    /// The client's user name (`$USER`, else `$LOGNAME`).
    pub user: String,
    /// The data directory as the client names it.
    pub data_dir: String,
    /// Whether the data directory was named (not the default).
    pub data_dir_given: bool,
}

/// Write one frame (payloads longer than the limit are split).
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        let mut head = [0u8; 5];
        head[0] = kind;
        head[1..].copy_from_slice(&(n as u32).to_be_bytes());
        w.write_all(&head)?;
        w.write_all(&rest[..n])?;
        rest = &rest[n..];
        if rest.is_empty() {
            return w.flush();
        }
    }
}

/// Read one frame into `buf`; `None` at a clean end of the stream (before
/// a frame begins).
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<u8>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes: more than the limit of {MAX_PAYLOAD}"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(Some(head[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split() {
        let mut wire = Vec::new();
        write_frame(&mut wire, STDOUT, b"a\0b").unwrap();
        let big = vec![7u8; MAX_PAYLOAD + 3];
        write_frame(&mut wire, STDERR, &big).unwrap();
        write_frame(&mut wire, STDIN, b"").unwrap();
        let mut r = &wire[..];
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(STDOUT));
        assert_eq!(buf, b"a\0b");
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(STDERR));
        assert_eq!(buf.len(), MAX_PAYLOAD);
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(STDERR));
        assert_eq!(buf, [7, 7, 7]);
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Some(STDIN));
        assert!(buf.is_empty());
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), None);
    }

    #[test]
    fn a_cut_frame_is_an_error() {
        let mut wire = Vec::new();
        write_frame(&mut wire, STDOUT, b"hello").unwrap();
        let mut r = &wire[..7];
        assert!(read_frame(&mut r, &mut Vec::new()).is_err());
        let mut r = &wire[..3];
        assert!(read_frame(&mut r, &mut Vec::new()).is_err());
    }
}
