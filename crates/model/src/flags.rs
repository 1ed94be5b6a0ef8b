//! Flag value types both binaries share, spelled as Flux v1 and the Helm Operator (Go) spelled
//! them: durations like `5m` or `1h30m`, listen addresses like `:3030`.

use std::net::SocketAddr;
use std::time::Duration;

/// A duration as Flux writes them (`5m`, `20s`, `1h30m`), parsed with `humantime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FluxDuration(pub Duration);

impl std::str::FromStr for FluxDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s)
            .map(Self)
            .map_err(|e| format!("invalid duration {s:?}: {e} (expected e.g. 30s, 5m, 1h)"))
    }
}

/// A listen address; `:3030` means every interface, as in Go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddress(pub SocketAddr);

impl std::str::FromStr for ListenAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = if s.starts_with(':') {
            format!("0.0.0.0{s}")
        } else {
            s.to_owned()
        };
        text.parse()
            .map(Self)
            .map_err(|e| format!("invalid listen address {s:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_spellings_parse() {
        assert_eq!(
            "1h30m".parse::<FluxDuration>().map(|d| d.0),
            Ok(Duration::from_secs(5400))
        );
        assert_eq!(
            ":3030".parse::<ListenAddress>().map(|a| a.0.to_string()),
            Ok("0.0.0.0:3030".to_owned())
        );
        assert!("soon".parse::<FluxDuration>().unwrap_err().contains("soon"));
    }
}
