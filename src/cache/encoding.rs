//! How a cached object keeps its uid and resourceVersion: small when they have the usual form,
//! verbatim otherwise, and always reading back exactly as given.

/// A uid kept in 16 bytes when it is a UUID in the canonical form the API server generates (so
/// that it reads back exactly as it was), as given otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uid {
    Uuid(u128),
    Other(Box<str>),
}

impl Uid {
    pub fn new(uid: String) -> Self {
        let canonical = uid.len() == 36
            && uid.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
            });
        match canonical.then(|| u128::from_str_radix(&uid.replace('-', ""), 16)) {
            Some(Ok(n)) => Uid::Uuid(n),
            _ => Uid::Other(uid.into()),
        }
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uid::Uuid(n) => {
                let hex = format!("{n:032x}");
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                )
            }
            Uid::Other(uid) => f.write_str(uid),
        }
    }
}

/// A resourceVersion kept as a number when it reads back exactly as one (etcd's revisions), as
/// given otherwise (it is opaque to clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    Number(u64),
    Other(Box<str>),
}

impl Version {
    pub fn new(version: String) -> Self {
        match version.parse::<u64>() {
            Ok(n) if n.to_string() == version => Version::Number(n),
            _ => Version::Other(version.into()),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Number(n) => write!(f, "{n}"),
            Version::Other(version) => f.write_str(version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_and_versions_read_back_exactly_as_given() {
        for uid in [
            "5f0c1b8e-3a4f-4d7e-9b2a-1c2d3e4f5a6b",
            "00000000-0000-0000-0000-000000000000",
            "5F0C1B8E-3A4F-4D7E-9B2A-1C2D3E4F5A6B",
            "5f0c1b8e3a4f4d7e9b2a1c2d3e4f5a6b",
            "5f0c1b8e-3a4f-4d7e-9b2a-1c2d3e4f5a6",
            "",
        ] {
            assert_eq!(Uid::new(uid.into()).to_string(), uid);
        }
        assert!(matches!(
            Uid::new("5f0c1b8e-3a4f-4d7e-9b2a-1c2d3e4f5a6b".into()),
            Uid::Uuid(_)
        ));
        for version in [
            "0",
            "123456",
            "007",
            "+1",
            "18446744073709551616",
            "abc",
            "",
        ] {
            assert_eq!(Version::new(version.into()).to_string(), version);
        }
        assert_eq!(Version::new("123456".into()), Version::Number(123456));
    }
}
