//! TCP and TLS client connections: RFC 8656 framing (STUN messages and
//! ChannelData padded to 4 bytes) over a byte stream, with bounded buffers.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::net::TcpStream;

use crate::edge::Established;
use crate::proto::wire::{self, FrameKind};
use crate::proto::{ClientId, Transport};

/// Largest frame: STUN header plus a 64 KiB body, padded.
const MAX_FRAME: usize = 65_536 + 24;
/// Bytes asked of the kernel per read: the size of the loop's scratch
/// buffer that [`Conn::read_available`] reads into.
pub const READ_CHUNK: usize = 16 * 1024;
/// Output backlog after which frames to this client are dropped.
pub const MAX_BACKLOG: usize = 256 * 1024;

/// One client connection.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Client address.
    pub remote: SocketAddr,
    /// The address its admission slot is counted under.
    pub slot: IpAddr,
    /// TLS session, for TLS listeners.
    pub tls: Option<Box<rustls::ServerConnection>>,
    /// Received, not yet framed bytes (plaintext).
    pub inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    tls_backlog: usize,
    /// When the connection was accepted.
    pub since: Instant,
    /// Set when the connection must be closed.
    pub closed: bool,
    /// Whether the connection is queued for a flush.
    pub dirty: bool,
    /// The event-loop turn in which the connection was last read.
    pub read_turn: u64,
}

/// Result of extracting a frame from the front of a buffer.
pub enum Next {
    /// A complete frame of `len` bytes, followed by `skip - len` padding bytes.
    Frame { len: usize, skip: usize },
    /// More bytes needed.
    Partial,
    /// Not TURN framing: close the connection.
    Garbage,
}

/// Finds the next frame in `buf`.
pub fn next_frame(buf: &[u8]) -> Next {
    if buf.len() < 4 {
        return Next::Partial;
    }
    match wire::classify(buf) {
        FrameKind::Stun(len) => {
            if len > MAX_FRAME {
                Next::Garbage
            } else if buf.len() < len {
                Next::Partial
            } else {
                Next::Frame { len, skip: len }
            }
        }
        FrameKind::Channel(_, len) => {
            let skip = (len + 3) & !3;
            if buf.len() < skip {
                Next::Partial
            } else {
                Next::Frame { len, skip }
            }
        }
        FrameKind::Invalid => Next::Garbage,
    }
}

impl Conn {
    /// The state machine's name for this client; `id` is the connection id.
    pub fn client(&self, id: u32) -> ClientId {
        let transport = match self.tls {
            Some(_) => Transport::Tls,
            None => Transport::Tcp,
        };
        ClientId {
            transport,
            conn: id,
            remote: self.remote,
        }
    }

    /// Wraps a connection the accept stage established.
    pub fn new(e: Established) -> Self {
        let mut inbuf = e.inbuf;
        inbuf.reserve(4096);
        Self {
            stream: e.stream,
            remote: e.remote,
            slot: e.slot,
            tls: e.tls,
            inbuf,
            out: Vec::new(),
            out_pos: 0,
            tls_backlog: 0,
            since: e.accepted,
            closed: false,
            dirty: false,
            read_turn: 0,
        }
    }

    /// Reads what the socket has into `inbuf` (decrypting TLS), at most about
    /// `budget` bytes. Sets `closed` on EOF or error. Returns true when it
    /// stopped before the socket was empty (budget spent or `inbuf` full): the
    /// caller must come back (edge-triggered readiness will not fire again for
    /// data already waiting).
    /// `chunk` is the loop's scratch buffer (allocated and zeroed once), so a
    /// read costs no per-call buffer set-up and an idle connection holds no
    /// read buffer beyond its unparsed bytes.
    pub fn read_available(&mut self, budget: usize, chunk: &mut [u8; READ_CHUNK]) -> bool {
        let start = self.inbuf.len();
        loop {
            if self.inbuf.len() > 2 * MAX_FRAME || self.inbuf.len() - start >= budget {
                return true;
            }
            match &mut self.tls {
                None => match self.stream.read(chunk) {
                    Ok(0) => {
                        self.closed = true;
                        return false;
                    }
                    Ok(n) => {
                        self.inbuf.extend_from_slice(&chunk[..n]);
                        // A short read took everything the socket held: the
                        // next segment brings a new edge, so no second read
                        // just to see EAGAIN (tokio does the same).
                        if n < READ_CHUNK {
                            return false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.closed = true;
                        return false;
                    }
                },
                Some(tls) => {
                    match tls.read_tls(&mut self.stream) {
                        Ok(0) => {
                            self.closed = true;
                            return false;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            self.closed = true;
                            return false;
                        }
                    }
                    if tls.process_new_packets().is_err() {
                        // Try to deliver the alert, then close.
                        let _ = tls.write_tls(&mut self.stream);
                        self.closed = true;
                        return false;
                    }
                    loop {
                        match tls.reader().read(chunk) {
                            Ok(0) => {
                                self.closed = true;
                                return false;
                            }
                            Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => {
                                self.closed = true;
                                return false;
                            }
                        }
                    }
                    if tls.wants_write() {
                        self.dirty = true;
                    }
                }
            }
        }
    }

    /// Queues one frame; drops it if the backlog is too large.
    /// Returns whether the frame was queued.
    pub fn queue(&mut self, frame: &[u8]) -> bool {
        match &mut self.tls {
            Some(tls) => {
                if self.tls_backlog + frame.len() > MAX_BACKLOG {
                    return false;
                }
                if tls.writer().write_all(frame).is_err() {
                    self.closed = true;
                    return false;
                }
                self.tls_backlog += frame.len();
            }
            None => {
                if self.out.len() - self.out_pos + frame.len() > MAX_BACKLOG {
                    return false;
                }
                self.out.extend_from_slice(frame);
            }
        }
        true
    }

    /// Writes queued bytes until done or the socket would block.
    pub fn flush(&mut self) {
        match &mut self.tls {
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.stream) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.closed = true;
                            return;
                        }
                    }
                }
                self.tls_backlog = 0;
            }
            None => {
                while self.out_pos < self.out.len() {
                    match self.stream.write(&self.out[self.out_pos..]) {
                        Ok(0) => {
                            self.closed = true;
                            return;
                        }
                        Ok(n) => self.out_pos += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.closed = true;
                            return;
                        }
                    }
                }
                if self.out_pos == self.out.len() {
                    self.out.clear();
                    self.out_pos = 0;
                } else if self.out_pos > 64 * 1024 {
                    self.out.drain(..self.out_pos);
                    self.out_pos = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert!(matches!(next_frame(&[0, 1]), Next::Partial));
        // ChannelData of 5 bytes needs 12 bytes with padding on streams.
        let mut cd = vec![0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5];
        assert!(matches!(next_frame(&cd), Next::Partial));
        cd.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(next_frame(&cd), Next::Frame { len: 9, skip: 12 }));
        let stun = [
            0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(matches!(
            next_frame(&stun),
            Next::Frame { len: 20, skip: 20 }
        ));
        assert!(matches!(next_frame(&stun[..10]), Next::Partial));
        // A TLS ClientHello sent to the plain TCP port.
        assert!(matches!(
            next_frame(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            Next::Garbage
        ));
        assert!(matches!(next_frame(&[0xff, 0, 0, 0]), Next::Garbage));
    }
}
