//! A TCP relay the test controls: every link between two members goes
//! through one, so the test can cut it (both ways, or one way) and heal it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Forwards connections from its own port to `target`'s.
pub struct Relay {
    pub addr: String,
    /// When set, nothing flows from the connecting side to the target (and
    /// open connections are closed): the link is cut that way.
    forward_cut: Arc<AtomicBool>,
    /// When set, nothing flows back.
    back_cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(target: String) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let relay = Relay {
            addr,
            forward_cut: Arc::default(),
            back_cut: Arc::default(),
            open: Arc::default(),
            stop: Arc::default(),
        };
        let (fwd, back, open, stop) = (
            relay.forward_cut.clone(),
            relay.back_cut.clone(),
            relay.open.clone(),
            relay.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let (client, _) = match l.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                if fwd.load(Ordering::SeqCst) && back.load(Ordering::SeqCst) {
                    // A cut link: the connection goes nowhere.
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut o = open.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    fwd.clone(),
                );
                pump(server, client, back.clone());
            }
        });
        relay
    }

    /// Cuts the link both ways.
    pub fn cut(&self) {
        self.forward_cut.store(true, Ordering::SeqCst);
        self.back_cut.store(true, Ordering::SeqCst);
        self.close_open();
    }

    /// Drops, silently, what the connecting side sends (its connections stay
    /// open: nothing tells it).
    pub fn cut_forward(&self) {
        self.forward_cut.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.forward_cut.store(false, Ordering::SeqCst);
        self.back_cut.store(false, Ordering::SeqCst);
    }

    fn close_open(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.close_open();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if cut.load(Ordering::SeqCst) {
                // Dropped on the way, as by a one-way fault: nobody is told.
                continue;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
