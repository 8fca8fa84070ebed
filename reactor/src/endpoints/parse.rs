//! Endpoint description strings. Mirrors `serverFromString`,
//! `clientFromString`, `quoteStringArgument` and the `_tokenize` / `_parse`
//! / `_parseTCP` / `_parseClientTCP` helpers of
//! `twisted.internet.endpoints`, for the `tcp` (and, servers, `tcp6`)
//! types.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use deferred::Deferred;

use crate::endpoints::tcp::{
    TCP4ClientEndpoint, TCP4ServerEndpoint, TCP6ClientEndpoint, TCP6ServerEndpoint,
};
use crate::endpoints::{StreamClientEndpoint, StreamServerEndpoint};
use crate::interfaces::{ListeningPort, ReactorTcp};
use crate::protocol::Factory;
use crate::transport::Transport;

/// An endpoint description that cannot be used, naming the part at fault.
/// Mirrors the `ValueError` (and the `TypeError` of a bad argument list)
/// that Twisted's `serverFromString` / `clientFromString` raise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointParseError {
    /// The type before the first `:` is not one this crate knows. Mirrors
    /// Twisted's message.
    #[error("Unknown endpoint type: '{0}'")]
    UnknownType(String),
    /// The description ends with a backslash that escapes nothing.
    #[error("endpoint description {0:?} ends with a lone backslash")]
    TrailingBackslash(String),
    /// A required argument is missing (Twisted: `TypeError: missing ...
    /// argument`).
    #[error("{endpoint} endpoint description {description:?} is missing the {argument} argument")]
    MissingArgument {
        /// The endpoint type.
        endpoint: &'static str,
        /// The argument's name.
        argument: &'static str,
        /// The whole description.
        description: String,
    },
    /// An argument's value does not parse (Twisted: `ValueError: invalid
    /// literal for int()`).
    #[error("{endpoint} endpoint: invalid {argument} {value:?}: {reason}")]
    InvalidValue {
        /// The endpoint type.
        endpoint: &'static str,
        /// The argument's name.
        argument: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A keyword the endpoint does not take (Twisted: `TypeError: got an
    /// unexpected keyword argument`).
    #[error("{endpoint} endpoint: unexpected argument {argument:?}")]
    UnexpectedArgument {
        /// The endpoint type.
        endpoint: &'static str,
        /// The keyword given.
        argument: String,
    },
    /// More positional arguments than the endpoint takes (Twisted:
    /// `TypeError: takes ... positional arguments`).
    #[error("{endpoint} endpoint: unexpected positional argument {value:?}")]
    TooManyArguments {
        /// The endpoint type.
        endpoint: &'static str,
        /// The first one too many.
        value: String,
    },
    /// The same argument given by position and by keyword (Twisted:
    /// `TypeError: got multiple values for argument`).
    #[error("{endpoint} endpoint: {argument} given twice")]
    DuplicateArgument {
        /// The endpoint type.
        endpoint: &'static str,
        /// The argument's name.
        argument: &'static str,
    },
}

type Parsed = (Vec<String>, Vec<(String, String)>);

/// Splits a description into positional arguments and `key=value`
/// keywords. `:` separates arguments, the first `=` of an argument
/// separates key from value (later ones belong to the value), `\` escapes
/// the next character. Mirrors `_tokenize` and `_parse`.
fn parse(description: &str) -> Result<Parsed, EndpointParseError> {
    let mut args = Vec::new();
    let mut kw: Vec<(String, String)> = Vec::new();
    let mut sofar: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut equals_allowed = true;
    let mut add = |sofar: &mut Vec<String>| {
        let mut parts = std::mem::take(sofar);
        if parts.len() == 1 {
            args.push(parts.pop().expect("one part"));
        } else {
            let value = parts.pop().expect("two parts");
            let key = parts.pop().expect("two parts");
            // A Python dict: a repeated keyword keeps the last value.
            kw.retain(|(k, _)| *k != key);
            kw.push((key, value));
        }
    };
    let mut chars = description.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => {
                sofar.push(std::mem::take(&mut current));
                add(&mut sofar);
                equals_allowed = true;
            }
            '=' if equals_allowed => {
                sofar.push(std::mem::take(&mut current));
                equals_allowed = false;
            }
            '\\' => match chars.next() {
                Some(n) => current.push(n),
                None => {
                    return Err(EndpointParseError::TrailingBackslash(
                        description.to_owned(),
                    ))
                }
            },
            c => current.push(c),
        }
    }
    sofar.push(current);
    add(&mut sofar);
    Ok((args, kw))
}

/// Escapes `\` and `:` so `argument` reads back as one argument. Mirrors
/// `quoteStringArgument`.
pub fn quote_string_argument(argument: &str) -> String {
    argument.replace('\\', "\\\\").replace(':', "\\:")
}

fn number<T: std::str::FromStr>(
    endpoint: &'static str,
    argument: &'static str,
    value: &str,
) -> Result<T, EndpointParseError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse::<T>()
        .map_err(|e| EndpointParseError::InvalidValue {
            endpoint,
            argument,
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

/// Assigns positional and keyword arguments to `names`, as a Python call
/// would.
fn bind(
    endpoint: &'static str,
    names: &[&'static str],
    args: Vec<String>,
    kw: Vec<(String, String)>,
) -> Result<Vec<Option<String>>, EndpointParseError> {
    let mut out: Vec<Option<String>> = vec![None; names.len()];
    let mut args = args.into_iter();
    for (slot, value) in out.iter_mut().zip(args.by_ref()) {
        *slot = Some(value);
    }
    if let Some(value) = args.next() {
        return Err(EndpointParseError::TooManyArguments { endpoint, value });
    }
    for (key, value) in kw {
        let Some(i) = names.iter().position(|n| *n == key) else {
            return Err(EndpointParseError::UnexpectedArgument {
                endpoint,
                argument: key,
            });
        };
        if out[i].is_some() {
            return Err(EndpointParseError::DuplicateArgument {
                endpoint,
                argument: names[i],
            });
        }
        out[i] = Some(value);
    }
    Ok(out)
}

/// A server endpoint parsed from a description. Implements
/// [`StreamServerEndpoint`]; match on it to see what was parsed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServerEndpoint {
    /// `tcp:...`.
    Tcp4(TCP4ServerEndpoint),
    /// `tcp6:...`.
    Tcp6(TCP6ServerEndpoint),
}

impl StreamServerEndpoint for ServerEndpoint {
    fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<Rc<dyn ListeningPort>> {
        match self {
            ServerEndpoint::Tcp4(e) => e.listen(factory),
            ServerEndpoint::Tcp6(e) => e.listen(factory),
        }
    }
}

/// A client endpoint parsed from a description. Implements
/// [`StreamClientEndpoint`]; match on it to see what was parsed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEndpoint {
    /// `tcp:...`.
    Tcp4(TCP4ClientEndpoint),
    /// `tcp6:...` (a convenience: Twisted's `clientFromString` has no
    /// `tcp6` type).
    Tcp6(TCP6ClientEndpoint),
}

impl StreamClientEndpoint for ClientEndpoint {
    fn connect(&self, factory: Rc<dyn Factory>) -> Deferred<Rc<dyn Transport>> {
        match self {
            ClientEndpoint::Tcp4(e) => e.connect(factory),
            ClientEndpoint::Tcp6(e) => e.connect(factory),
        }
    }
}

/// A server endpoint from a description: `tcp:PORT[:interface=ADDR]
/// [:backlog=N]` (interface and backlog may also be given by position) or
/// `tcp6:...` (interface defaulting to `::`). The type is case-insensitive.
/// Mirrors `serverFromString(reactor, description)`.
///
/// # Examples
///
/// ```
/// use reactor::endpoints::{server_from_string, EndpointParseError, ServerEndpoint};
/// use reactor::testing::MemoryReactor;
/// use std::rc::Rc;
///
/// let reactor = Rc::new(MemoryReactor::new());
/// let ServerEndpoint::Tcp4(e) = server_from_string(reactor.clone(), "tcp:1079:interface=127.0.0.1").unwrap()
/// else { panic!() };
/// assert_eq!((e.port(), e.interface(), e.backlog()), (1079, "127.0.0.1", 50));
/// let err = server_from_string(reactor, "tcp:1079:backlog=many").unwrap_err();
/// assert!(matches!(err, EndpointParseError::InvalidValue { argument: "backlog", .. }));
/// ```
pub fn server_from_string(
    reactor: Rc<dyn ReactorTcp>,
    description: &str,
) -> Result<ServerEndpoint, EndpointParseError> {
    let (mut args, kw) = parse(description)?;
    let kind = args.remove(0);
    let (endpoint, default_interface): (&'static str, &str) =
        match kind.to_ascii_lowercase().as_str() {
            "tcp" => ("tcp", ""),
            "tcp6" => ("tcp6", "::"),
            _ => return Err(EndpointParseError::UnknownType(kind)),
        };
    let bound = bind(endpoint, &["port", "interface", "backlog"], args, kw)?;
    let port: u16 = match &bound[0] {
        Some(p) => number(endpoint, "port", p)?,
        None => {
            return Err(EndpointParseError::MissingArgument {
                endpoint,
                argument: "port",
                description: description.to_owned(),
            })
        }
    };
    let interface = bound[1]
        .clone()
        .unwrap_or_else(|| default_interface.to_owned());
    let backlog: u32 = match &bound[2] {
        Some(b) => number(endpoint, "backlog", b)?,
        None => crate::interfaces::DEFAULT_BACKLOG,
    };
    Ok(if endpoint == "tcp" {
        ServerEndpoint::Tcp4(
            TCP4ServerEndpoint::new(reactor, port)
                .with_backlog(backlog)
                .with_interface(&interface),
        )
    } else {
        ServerEndpoint::Tcp6(
            TCP6ServerEndpoint::new(reactor, port)
                .with_backlog(backlog)
                .with_interface(&interface),
        )
    })
}

/// A client endpoint from a description: `tcp:host=HOST:port=PORT
/// [:timeout=SECONDS][:bindAddress=IP]`, host and port also by position
/// (`tcp:HOST:PORT`, `tcp:HOST:port=PORT`, `tcp:host=HOST:PORT`). The type
/// is case-insensitive. `bindAddress` must be an IP address (the local port
/// is always chosen by the system, as in Twisted). Mirrors
/// `clientFromString(reactor, description)`.
///
/// # Examples
///
/// ```
/// use reactor::endpoints::{client_from_string, ClientEndpoint};
/// use reactor::testing::MemoryReactor;
/// use std::rc::Rc;
/// use std::time::Duration;
///
/// let reactor = Rc::new(MemoryReactor::new());
/// let ClientEndpoint::Tcp4(e) = client_from_string(reactor, "tcp:host=127.0.0.1:port=1079:timeout=7").unwrap()
/// else { panic!() };
/// assert_eq!((e.host(), e.port(), e.timeout()), ("127.0.0.1", 1079, Duration::from_secs(7)));
/// ```
pub fn client_from_string(
    reactor: Rc<dyn ReactorTcp>,
    description: &str,
) -> Result<ClientEndpoint, EndpointParseError> {
    let (mut args, kw) = parse(description)?;
    let kind = args.remove(0);
    let endpoint: &'static str = match kind.to_ascii_lowercase().as_str() {
        "tcp" => "tcp",
        "tcp6" => "tcp6",
        _ => return Err(EndpointParseError::UnknownType(kind)),
    };
    // `_parseClientTCP`: one positional argument is the host, unless the
    // host is given as a keyword, then it is the port.
    let names: &[&'static str] = if args.len() == 1 && kw.iter().any(|(k, _)| k == "host") {
        &["port", "host", "timeout", "bindAddress"]
    } else {
        &["host", "port", "timeout", "bindAddress"]
    };
    if args.len() > 2 {
        return Err(EndpointParseError::TooManyArguments {
            endpoint,
            value: args[2].clone(),
        });
    }
    let bound = bind(endpoint, names, args, kw)?;
    let get = |name: &str| bound[names.iter().position(|n| *n == name).expect("known")].clone();
    let missing = |argument: &'static str| EndpointParseError::MissingArgument {
        endpoint,
        argument,
        description: description.to_owned(),
    };
    let host = get("host").ok_or_else(|| missing("host"))?;
    let port: u16 = number(
        endpoint,
        "port",
        &get("port").ok_or_else(|| missing("port"))?,
    )?;
    let timeout = match get("timeout") {
        Some(t) => Duration::from_secs(number::<u64>(endpoint, "timeout", &t)?),
        None => crate::interfaces::DEFAULT_CONNECT_TIMEOUT,
    };
    let bind_address = match get("bindAddress") {
        Some(b) => Some(SocketAddr::new(
            number::<IpAddr>(endpoint, "bindAddress", &b)?,
            0,
        )),
        None => None,
    };
    macro_rules! build {
        ($ty:ident) => {{
            let mut e = $ty::new(reactor, &host, port).with_timeout(timeout);
            if let Some(b) = bind_address {
                e = e.with_bind_address(b);
            }
            e
        }};
    }
    Ok(if endpoint == "tcp" {
        ClientEndpoint::Tcp4(build!(TCP4ClientEndpoint))
    } else {
        ClientEndpoint::Tcp6(build!(TCP6ClientEndpoint))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Parsed {
        parse(s).unwrap()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    // Ports ServerEndpointParseTests... test_escape and test_impliedEscape
    // (on the tokenizer, which they exercise through `unix:`).
    #[test]
    fn escapes_and_implied_escape() {
        assert_eq!(
            p("unix:foo\\:bar\\=baz\\:qux\\\\"),
            (strs(&["unix", "foo:bar=baz:qux\\"]), vec![])
        );
        assert_eq!(
            p("unix:address=foo=bar"),
            (strs(&["unix"]), vec![("address".into(), "foo=bar".into())])
        );
        assert_eq!(
            p("a:b:d=1:c"),
            (strs(&["a", "b", "c"]), vec![("d".into(), "1".into())])
        );
        assert_eq!(
            parse("tcp:80\\"),
            Err(EndpointParseError::TrailingBackslash("tcp:80\\".into()))
        );
    }

    // Ports test_quoteStringArgument, and its inverse through the parser.
    #[test]
    fn quote_round_trips() {
        assert_eq!(
            quote_string_argument("some : stuff \\"),
            "some \\: stuff \\\\"
        );
        // As in Twisted, a quoted value is meant for a keyword, where `=`
        // needs no quoting.
        let value = "C:\\key=1:2";
        let (_, kw) = p(&format!("x:privateKey={}", quote_string_argument(value)));
        assert_eq!(kw, vec![("privateKey".to_string(), value.to_string())]);
    }
}
