//! The event loop's TCP/TLS side: adopting the connections the accept stage
//! established, reading them under [`CONN_READ_BUDGET`], framing STUN and
//! ChannelData out of the byte stream, and closing them (which releases
//! their admission slot).

use std::time::Instant;

use mio::{Interest, Token};

use super::stream::{self, Conn, Next};
use super::{clock, EventLoop, CONN_BASE, CONN_READ_BUDGET, IDLE_CONN};
use crate::proto::Input;

impl EventLoop {
    /// Takes the connections the accept stage established for this loop.
    pub(super) fn adopt_arrivals(&mut self) {
        self.inbox.take(&mut self.arrivals);
        while let Some(mut e) = self.arrivals.pop() {
            let mut id = self.next_conn;
            while self.io.conns.contains_key(&id) || id == 0 {
                id = id.wrapping_add(1);
            }
            self.next_conn = id.wrapping_add(1);
            if self
                .io
                .poll_registry
                .register(
                    &mut e.stream,
                    Token(CONN_BASE + id as usize),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                self.edge.release(e.slot);
                continue;
            }
            self.io.conns.insert(id, Conn::new(e));
            // Data may already be waiting (edge-triggered registration), and
            // the end of a TLS handshake may still be queued for writing.
            self.conn_event(id, true, true);
        }
    }

    pub(super) fn conn_event(&mut self, id: u32, readable: bool, writable: bool) {
        let Some(c) = self.io.conns.get_mut(&id) else {
            return;
        };
        if writable {
            c.flush();
            if c.closed {
                self.io.closing.push(id);
            }
        }
        if !readable {
            return;
        }
        let client = c.client(id);
        c.read_turn = self.turn;
        let more = c.read_available(CONN_READ_BUDGET, &mut self.read_chunk);
        if c.dirty {
            c.dirty = false;
            c.flush();
        }
        let mut buf = std::mem::take(&mut c.inbuf);
        let mut pos = 0;
        let mut garbage = false;
        let now = clock();
        loop {
            match stream::next_frame(&buf[pos..]) {
                Next::Frame { len, skip } => {
                    self.server.handle(
                        Input::FromClient {
                            client,
                            data: &buf[pos..pos + len],
                        },
                        now,
                        &mut self.io,
                    );
                    pos += skip;
                }
                Next::Partial => break,
                Next::Garbage => {
                    garbage = true;
                    break;
                }
            }
        }
        buf.drain(..pos);
        let Some(c) = self.io.conns.get_mut(&id) else {
            return;
        };
        c.inbuf = buf;
        if garbage {
            c.closed = true;
        }
        if c.closed {
            self.io.closing.push(id);
        } else if more {
            // Data left in the socket: read the next slice on the next turn.
            // A connection is read at most once a turn, so it is queued once.
            self.pending_conns.push(id);
        }
    }

    pub(super) fn reap_closed(&mut self) {
        while let Some(id) = self.io.closing.pop() {
            self.close_conn(id);
        }
    }

    fn close_conn(&mut self, id: u32) {
        if let Some(mut c) = self.io.conns.remove(&id) {
            let _ = self.io.poll_registry.deregister(&mut c.stream);
            self.edge.release(c.slot);
            self.server
                .handle(Input::ClientClosed(c.client(id)), clock(), &mut self.io);
        }
    }

    pub(super) fn close_idle(&mut self, now: Instant) {
        let idle: Vec<u32> = self
            .io
            .conns
            .iter()
            .filter(|(&id, c)| {
                now.saturating_duration_since(c.since) > IDLE_CONN
                    && !self.server.has_allocation(&c.client(id))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close_conn(id);
        }
    }
}
