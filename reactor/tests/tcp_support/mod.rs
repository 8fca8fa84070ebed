//! Helpers shared by the `tcp_*` tests: a recording protocol driven by
//! hooks, a factory (server and client) that records what it was told, and
//! bounded runs. Each test file uses only some of them.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use deferred::Failure;
use reactor::prelude::*;
use reactor::{Address, Reactor};

/// What one connection's protocol saw.
#[derive(Default)]
pub struct Record {
    pub made: usize,
    pub data: Vec<u8>,
    pub lost: Vec<Failure>,
    pub read_lost: usize,
    pub write_lost: usize,
    pub transport: Option<Rc<dyn Transport>>,
    /// Set by `connection_lost`: was it called from inside a transport call?
    pub lost_while_in_call: bool,
}

impl Record {
    /// The type of the one `connection_lost` reason.
    pub fn lost_type(&self) -> &'static str {
        assert_eq!(self.lost.len(), 1, "connection_lost exactly once");
        self.lost[0].type_name()
    }
}

pub type Rec = Rc<RefCell<Record>>;
type TFn = Box<dyn Fn(&Rc<dyn Transport>, &Rec)>;
type DFn = Box<dyn Fn(&Rc<dyn Transport>, &[u8], &Rec)>;
type LFn = Box<dyn Fn(&Failure, &Rec)>;
type CFn = Box<dyn Fn(&Rc<dyn Connector>, &Failure)>;
type SFn = Box<dyn Fn(&Rc<dyn Connector>)>;

/// What the protocols of a [`TestFactory`] do beyond recording.
#[derive(Default)]
pub struct Hooks {
    pub made: Option<TFn>,
    pub data: Option<DFn>,
    pub lost: Option<LFn>,
    pub read_lost: Option<TFn>,
    pub half_close: bool,
    /// `build_protocol` returns `None`.
    pub refuse: bool,
    /// `build_protocol` panics.
    pub panic_build: bool,
    pub client_failed: Option<CFn>,
    pub client_lost: Option<CFn>,
    pub started_connecting: Option<SFn>,
}

impl Hooks {
    pub fn on_made(mut self, f: impl Fn(&Rc<dyn Transport>, &Rec) + 'static) -> Self {
        self.made = Some(Box::new(f));
        self
    }
    pub fn on_data(mut self, f: impl Fn(&Rc<dyn Transport>, &[u8], &Rec) + 'static) -> Self {
        self.data = Some(Box::new(f));
        self
    }
    pub fn on_lost(mut self, f: impl Fn(&Failure, &Rec) + 'static) -> Self {
        self.lost = Some(Box::new(f));
        self
    }
    pub fn on_client_failed(mut self, f: impl Fn(&Rc<dyn Connector>, &Failure) + 'static) -> Self {
        self.client_failed = Some(Box::new(f));
        self
    }
    pub fn on_client_lost(mut self, f: impl Fn(&Rc<dyn Connector>, &Failure) + 'static) -> Self {
        self.client_lost = Some(Box::new(f));
        self
    }
    pub fn factory(self) -> Rc<TestFactory> {
        TestFactory::new(self)
    }
}

struct TestProto {
    hooks: Rc<Hooks>,
    rec: Rec,
}

impl Protocol for TestProto {
    fn connection_made(&mut self, transport: Rc<dyn Transport>) {
        {
            let mut r = self.rec.borrow_mut();
            r.made += 1;
            r.transport = Some(Rc::clone(&transport));
        }
        if let Some(f) = &self.hooks.made {
            f(&transport, &self.rec);
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        self.rec.borrow_mut().data.extend_from_slice(data);
        let t = self.rec.borrow().transport.clone();
        if let (Some(f), Some(t)) = (&self.hooks.data, t) {
            f(&t, data, &self.rec);
        }
    }

    fn connection_lost(&mut self, reason: Failure) {
        self.rec.borrow_mut().lost.push(reason.clone());
        if let Some(f) = &self.hooks.lost {
            f(&reason, &self.rec);
        }
    }

    fn wants_half_close(&self) -> bool {
        self.hooks.half_close
    }

    fn read_connection_lost(&mut self) {
        self.rec.borrow_mut().read_lost += 1;
        let t = self.rec.borrow().transport.clone();
        if let (Some(f), Some(t)) = (&self.hooks.read_lost, t) {
            f(&t, &self.rec);
        }
    }

    fn write_connection_lost(&mut self) {
        self.rec.borrow_mut().write_lost += 1;
    }
}

/// A server and client factory whose protocols record into [`Record`]s.
pub struct TestFactory {
    pub hooks: Rc<Hooks>,
    pub conns: RefCell<Vec<Rec>>,
    pub addrs: RefCell<Vec<Address>>,
    pub started: Cell<usize>,
    pub stopped: Cell<usize>,
    /// `started`, `failed:<type>`, `lost:<type>`, `start_factory`,
    /// `stop_factory`, in order.
    pub events: RefCell<Vec<String>>,
    pub failures: RefCell<Vec<Failure>>,
}

impl TestFactory {
    pub fn new(hooks: Hooks) -> Rc<TestFactory> {
        Rc::new(TestFactory {
            hooks: Rc::new(hooks),
            conns: RefCell::new(Vec::new()),
            addrs: RefCell::new(Vec::new()),
            started: Cell::new(0),
            stopped: Cell::new(0),
            events: RefCell::new(Vec::new()),
            failures: RefCell::new(Vec::new()),
        })
    }

    pub fn conn(&self, i: usize) -> Rec {
        Rc::clone(&self.conns.borrow()[i])
    }

    pub fn events(&self) -> Vec<String> {
        self.events.borrow().clone()
    }
}

impl Factory for TestFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        self.addrs.borrow_mut().push(*addr);
        if self.hooks.panic_build {
            panic!("build_protocol blew up");
        }
        if self.hooks.refuse {
            return None;
        }
        let rec: Rec = Rc::default();
        self.conns.borrow_mut().push(Rc::clone(&rec));
        Some(Box::new(TestProto {
            hooks: Rc::clone(&self.hooks),
            rec,
        }))
    }

    fn start_factory(&self) {
        self.started.set(self.started.get() + 1);
        self.events.borrow_mut().push("start_factory".into());
    }

    fn stop_factory(&self) {
        self.stopped.set(self.stopped.get() + 1);
        self.events.borrow_mut().push("stop_factory".into());
    }
}

fn short_type(f: &Failure) -> String {
    f.type_name().rsplit("::").next().unwrap_or("").to_owned()
}

impl ClientFactory for TestFactory {
    fn started_connecting(&self, connector: &Rc<dyn Connector>) {
        self.events.borrow_mut().push("started".into());
        if let Some(f) = &self.hooks.started_connecting {
            f(connector);
        }
    }

    fn client_connection_failed(&self, connector: &Rc<dyn Connector>, reason: Failure) {
        self.events
            .borrow_mut()
            .push(format!("failed:{}", connect_error_kind(&reason)));
        self.failures.borrow_mut().push(reason.clone());
        if let Some(f) = &self.hooks.client_failed {
            f(connector, &reason);
        }
    }

    fn client_connection_lost(&self, connector: &Rc<dyn Connector>, reason: Failure) {
        self.events
            .borrow_mut()
            .push(format!("lost:{}", short_type(&reason)));
        if let Some(f) = &self.hooks.client_lost {
            f(connector, &reason);
        }
    }
}

/// `Refused`, `Timeout`, ... for a [`reactor::ConnectError`], else the type.
pub fn connect_error_kind(f: &Failure) -> String {
    match f.downcast_ref::<reactor::ConnectError>() {
        Some(e) => format!("{e:?}")
            .split([' ', '{', '('])
            .next()
            .unwrap_or("")
            .to_owned(),
        None => short_type(f),
    }
}

/// A reactor for one test.
pub fn new_reactor() -> Reactor {
    Reactor::new().expect("a reactor")
}

/// Runs `reactor` until it stops, failing the test if it has not stopped
/// after 60 s.
pub fn run(reactor: &Reactor) {
    test_support::reactor::run_bounded(reactor).expect("the reactor runs");
}

/// Stops the reactor once `cond` holds, checking every millisecond.
pub fn stop_when(reactor: &Reactor, cond: impl Fn() -> bool + 'static) {
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(1), move || {
        if cond() {
            let _ = r.stop();
        } else {
            stop_when(&r, cond);
        }
    });
}

/// Listens on 127.0.0.1, a free port.
pub fn listen(reactor: &Reactor, factory: Rc<TestFactory>) -> Rc<dyn ListeningPort> {
    reactor
        .listen_tcp(0, factory, reactor::DEFAULT_BACKLOG, "127.0.0.1")
        .expect("listen on 127.0.0.1")
}

/// Connects to `port` on 127.0.0.1.
pub fn connect(reactor: &Reactor, port: u16, factory: Rc<TestFactory>) -> Rc<dyn Connector> {
    reactor.connect_tcp(
        "127.0.0.1",
        port,
        factory,
        reactor::DEFAULT_CONNECT_TIMEOUT,
        None,
    )
}

/// A port nothing listens on (bound, then closed).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// True if this host has `::1`.
pub fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Turns `reactor` by hand (it is not `run`, so no shutdown closes the
/// connections) until `cond` holds; fails the test after 60 s.
pub fn turn_until(reactor: &Reactor, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        reactor.iterate(Duration::from_millis(5));
        assert!(
            std::time::Instant::now() < deadline,
            "timed out turning the reactor"
        );
    }
}

/// A listener on 127.0.0.1 whose accept queue is full (backlog 0, filled by
/// connections nobody accepts): the kernel drops further SYNs, so a
/// connection attempt to it stays in progress until its timeout. Keep the
/// returned sockets alive for as long as that is needed.
pub fn black_hole() -> (SocketAddr, Vec<socket2::Socket>) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut keep = vec![listener];
    for _ in 0..4 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        keep.push(s);
    }
    std::thread::sleep(Duration::from_millis(50));
    (addr, keep)
}
