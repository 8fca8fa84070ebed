//! Producers and consumers on real TCP connections.
//!
//! Ports `twisted.test.test_abstract` / `twisted.internet.test.test_tcp`
//! producer tests that apply to a TCP transport: a streaming producer is
//! paused when the buffer passes `bufferSize` (64 KiB) and resumed when it
//! drains (`test_tcp.ProducerTests`-style, with a peer that does not read),
//! a pull producer is asked for more each time the buffer empties,
//! `loseConnection` waits for a registered producer to unregister
//! (`FileDescriptor.loseConnection` / `unregisterProducer`),
//! `stopProducing` when the connection goes, and `registerProducer`'s
//! errors.

mod tcp_support;

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use reactor::prelude::*;
use reactor::{ProducerError, Reactor};
use tcp_support::*;

const CHUNK: usize = 16 * 1024;

/// A push producer that writes one chunk per turn while not paused.
struct Pusher {
    reactor: Reactor,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    running: Cell<bool>,
    written: Cell<usize>,
    pauses: Cell<usize>,
    resumes: Cell<usize>,
    stops: Cell<usize>,
    /// Stop after this many bytes: unregister and lose the connection.
    limit: usize,
    me: RefCell<Option<std::rc::Weak<Pusher>>>,
}

impl Pusher {
    fn new(reactor: &Reactor, limit: usize) -> Rc<Pusher> {
        let p = Rc::new(Pusher {
            reactor: reactor.clone(),
            transport: RefCell::new(None),
            running: Cell::new(false),
            written: Cell::new(0),
            pauses: Cell::new(0),
            resumes: Cell::new(0),
            stops: Cell::new(0),
            limit,
            me: RefCell::new(None),
        });
        *p.me.borrow_mut() = Some(Rc::downgrade(&p));
        p
    }

    fn tick(self: &Rc<Self>) {
        if !self.running.get() {
            return;
        }
        let t = self.transport.borrow().clone().unwrap();
        if self.written.get() >= self.limit {
            self.running.set(false);
            t.unregister_producer();
            t.lose_connection();
            return;
        }
        t.write(&[b'p'; CHUNK]);
        self.written.set(self.written.get() + CHUNK);
        let me = Rc::clone(self);
        self.reactor.call_later(Duration::ZERO, move || me.tick());
    }

    fn start(self: &Rc<Self>) {
        self.running.set(true);
        let me = Rc::clone(self);
        self.reactor.call_later(Duration::ZERO, move || me.tick());
    }
}

impl Producer for Pusher {
    fn pause_producing(&self) {
        self.pauses.set(self.pauses.get() + 1);
        self.running.set(false);
    }
    fn resume_producing(&self) {
        self.resumes.set(self.resumes.get() + 1);
        if !self.running.get() {
            let me = self.me.borrow().as_ref().unwrap().upgrade().unwrap();
            me.start();
        }
    }
    fn stop_producing(&self) {
        self.stops.set(self.stops.get() + 1);
        self.running.set(false);
    }
}

#[test]
fn a_reader_that_does_not_read_cannot_make_the_server_buffer_without_bound() {
    const TOTAL: usize = 24 << 20;
    let reactor = new_reactor();
    let pusher = Pusher::new(&reactor, TOTAL);
    let p = pusher.clone();
    let server = Hooks::default()
        .on_made(move |t, _| {
            *p.transport.borrow_mut() = Some(Rc::clone(t));
            t.register_producer(p.clone(), true).unwrap();
            p.start();
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        go_rx.recv().unwrap(); // do not read until told
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return n,
                k => n += k,
            }
        }
    });
    // The kernel's buffers fill, then ours passes 64 KiB: paused.
    turn_until(&reactor, || pusher.pauses.get() > 0);
    let at_pause = pusher.written.get();
    for _ in 0..200 {
        reactor.iterate(Duration::from_millis(1));
    }
    assert!(
        !pusher.running.get(),
        "still paused: the peer reads nothing"
    );
    assert_eq!(
        pusher.written.get(),
        at_pause,
        "nothing more was produced while paused"
    );
    assert!(
        at_pause < TOTAL,
        "paused long before the end ({at_pause} bytes)"
    );
    go_tx.send(()).unwrap();
    turn_until(&reactor, || client.is_finished());
    assert_eq!(
        client.join().unwrap(),
        pusher.written.get(),
        "everything arrived, in full"
    );
    assert!(pusher.written.get() >= TOTAL);
    assert!(pusher.resumes.get() >= 1, "resumed once drained");
    turn_until(&reactor, || !server.conn(0).borrow().lost.is_empty());
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionDone"
    );
    assert_eq!(
        pusher.stops.get(),
        0,
        "unregistered before the close: not stopped"
    );
}

/// A pull producer: one chunk per `resume_producing`.
struct Puller {
    transport: Rc<dyn Transport>,
    left: Cell<usize>,
    calls: Cell<usize>,
}

impl Producer for Puller {
    fn resume_producing(&self) {
        self.calls.set(self.calls.get() + 1);
        if self.left.get() == 0 {
            self.transport.unregister_producer();
            self.transport.lose_connection();
            return;
        }
        self.left.set(self.left.get() - 1);
        self.transport.write(&[b'q'; CHUNK]);
    }
    fn stop_producing(&self) {}
}

#[test]
fn a_pull_producer_is_asked_for_more_each_time_the_buffer_empties() {
    let reactor = new_reactor();
    let pullers: Rc<RefCell<Vec<Rc<Puller>>>> = Rc::default();
    let ps = pullers.clone();
    let server = Hooks::default()
        .on_made(move |t, _| {
            let p = Rc::new(Puller {
                transport: Rc::clone(t),
                left: Cell::new(10),
                calls: Cell::new(0),
            });
            ps.borrow_mut().push(p.clone());
            t.register_producer(p.clone(), false).unwrap();
            assert_eq!(p.calls.get(), 1, "asked for a chunk at once, as Twisted's");
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let client = Hooks::default().factory();
    connect(&reactor, port, client.clone());
    turn_until(&reactor, || client.stopped.get() == 1);
    assert_eq!(client.conn(0).borrow().data.len(), 10 * CHUNK);
    assert_eq!(pullers.borrow()[0].calls.get(), 11);
    assert_eq!(
        client.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionDone"
    );
}

#[test]
fn lose_connection_waits_for_the_producer_to_unregister() {
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|t, _| {
            struct Idle;
            impl Producer for Idle {
                fn resume_producing(&self) {}
                fn stop_producing(&self) {}
            }
            t.register_producer(Rc::new(Idle), true).unwrap();
            t.write(b"before");
            t.lose_connection();
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let client = Hooks::default().factory();
    connect(&reactor, port, client.clone());
    turn_until(&reactor, || {
        client
            .conns
            .borrow()
            .first()
            .is_some_and(|c| c.borrow().data == b"before")
    });
    for _ in 0..30 {
        reactor.iterate(Duration::from_millis(1));
    }
    assert!(
        server.conn(0).borrow().lost.is_empty(),
        "still open while the producer is registered"
    );
    assert!(client.conn(0).borrow().lost.is_empty());
    let t = server.conn(0).borrow().transport.clone().unwrap();
    t.write(b" after");
    t.unregister_producer();
    turn_until(&reactor, || {
        client.stopped.get() == 1 && !server.conn(0).borrow().lost.is_empty()
    });
    assert_eq!(client.conn(0).borrow().data, b"before after");
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionDone"
    );
}

#[test]
fn the_producer_is_stopped_when_the_connection_goes() {
    let reactor = new_reactor();
    let pusher = Pusher::new(&reactor, usize::MAX);
    let p = pusher.clone();
    let server = Hooks::default()
        .on_made(move |t, _| {
            *p.transport.borrow_mut() = Some(Rc::clone(t));
            t.register_producer(p.clone(), true).unwrap();
            // Registered once only.
            let again = t.register_producer(p.clone(), true);
            assert_eq!(again.err(), Some(ProducerError::AlreadyRegistered));
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    turn_until(&reactor, || !server.conns.borrow().is_empty());
    drop(s);
    turn_until(&reactor, || !server.conn(0).borrow().lost.is_empty());
    assert_eq!(pusher.stops.get(), 1);
    // Registering on a closed transport: refused, and told to stop.
    let t = server.conn(0).borrow().transport.clone().unwrap();
    let late = Pusher::new(&reactor, 0);
    assert_eq!(
        t.register_producer(late.clone(), true).err(),
        Some(ProducerError::Disconnected)
    );
    assert_eq!(late.stops.get(), 1);
}
