//! A small `--name value` command-line parser for the netbench tools, so
//! that every tool rejects a misspelt or malformed option with a message
//! naming it (no clap: five flat options per tool do not need it).

use std::collections::BTreeMap;
use std::str::FromStr;

/// A bad command line: which option, and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgError {
    /// An argument that is not `--name value` or `--name=value`.
    #[error("unexpected argument {0:?} (options are --name value)")]
    Unexpected(String),
    /// `--name` was last on the line, with no value.
    #[error("option --{0} needs a value")]
    MissingValue(String),
    /// An option this tool does not know.
    #[error("unknown option --{name} (known: {known})")]
    Unknown {
        /// The option as given.
        name: String,
        /// The options the tool accepts, comma-separated.
        known: String,
    },
    /// A value that does not parse as the option's type.
    #[error("option --{name}: cannot parse {value:?}: {reason}")]
    Invalid {
        /// The option.
        name: String,
        /// The value as given.
        value: String,
        /// The parser's message.
        reason: String,
    },
    /// A required option that was not given.
    #[error("option --{0} is required")]
    Required(String),
}

/// Parsed `--name value` pairs, checked against the options a tool knows.
#[derive(Debug, Clone)]
pub struct Args {
    values: BTreeMap<String, String>,
}

impl Args {
    /// Parses `argv` (without the program name), accepting only `known`
    /// option names; a repeated option keeps its last value.
    pub fn parse<I>(argv: I, known: &[&str]) -> Result<Self, ArgError>
    where
        I: IntoIterator<Item = String>,
    {
        let mut values = BTreeMap::new();
        let mut it = argv.into_iter();
        while let Some(arg) = it.next() {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ArgError::Unexpected(arg));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => {
                    let v = it
                        .next()
                        .ok_or_else(|| ArgError::MissingValue(body.to_owned()))?;
                    (body.to_owned(), v)
                }
            };
            if !known.contains(&name.as_str()) {
                return Err(ArgError::Unknown {
                    name,
                    known: known.join(", "),
                });
            }
            values.insert(name, value);
        }
        Ok(Self { values })
    }

    /// The value of `--name` parsed as `T`, or `default` when absent.
    pub fn get_or<T>(&self, name: &str, default: T) -> Result<T, ArgError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        Ok(self.get(name)?.unwrap_or(default))
    }

    /// The value of `--name` parsed as `T`; an error if absent.
    pub fn require<T>(&self, name: &str) -> Result<T, ArgError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.get(name)?
            .ok_or_else(|| ArgError::Required(name.to_owned()))
    }

    /// The value of `--name` parsed as `T`, `None` when absent.
    pub fn get<T>(&self, name: &str) -> Result<Option<T>, ArgError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.values
            .get(name)
            .map(|v| {
                v.parse().map_err(|e: T::Err| ArgError::Invalid {
                    name: name.to_owned(),
                    value: v.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn both_spellings_parse_and_unknown_options_are_named() {
        let a = Args::parse(argv("--port 7 --clients=64"), &["port", "clients"]).unwrap();
        assert_eq!(a.require::<u16>("port").unwrap(), 7);
        assert_eq!(a.get_or("clients", 1usize).unwrap(), 64);
        assert_eq!(a.get_or("missing", 3u8).unwrap(), 3);
        let err = Args::parse(argv("--prot 7"), &["port"]).unwrap_err();
        assert!(err.to_string().contains("--prot"), "{err}");
        let err = a.require::<String>("db").unwrap_err();
        assert_eq!(err, ArgError::Required("db".into()));
        let bad = Args::parse(argv("--port x"), &["port"]).unwrap();
        assert!(matches!(
            bad.require::<u16>("port"),
            Err(ArgError::Invalid { .. })
        ));
        assert_eq!(
            Args::parse(argv("--port"), &["port"]).unwrap_err(),
            ArgError::MissingValue("port".into())
        );
    }
}
