//! Key names: every key of one model (or bucket) shares one hash tag `{tg:<ns>:<id>}`, so each
//! script touches one cluster slot. `<id>` is `m=<name>` (`b=` for a bucket) when the name can
//! stand in a key as it is, else `m#<sha1 hex>`: a name with `{` or `}` would break the tag,
//! and a long one would make every key long.

use crate::Error;
use tollgate::InvalidConfig;

/// Names longer than this are digested.
const MAX_RAW: usize = 64;

/// What a tag names: a model or a bucket (so the two never share keys).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Model,
    Bucket,
}

/// The hash tag of `name` in namespace `ns`, with its braces.
pub(crate) fn tag(ns: &str, kind: Kind, name: &str) -> String {
    let k = match kind {
        Kind::Model => 'm',
        Kind::Bucket => 'b',
    };
    if name.len() <= MAX_RAW && !name.contains(['{', '}']) {
        format!("{{tg:{ns}:{k}={name}}}")
    } else {
        let hex = sha1_smol::Sha1::from(name.as_bytes()).digest().to_string();
        format!("{{tg:{ns}:{k}#{hex}}}")
    }
}

/// A namespace must be non-empty, short, and free of `{`, `}` and `:` (which would make two
/// namespaces' keys collide or break the tag).
pub(crate) fn check_namespace(ns: &str) -> Result<(), Error> {
    if ns.is_empty() || ns.len() > MAX_RAW || ns.contains(['{', '}', ':']) {
        let e = InvalidConfig {
            field: "namespace",
            reason: "must be 1 to 64 bytes without `{`, `}` or `:`",
        };
        return Err(Error::Limit(e.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_keys_are_digested() {
        assert_eq!(tag("app", Kind::Model, "gpt-4"), "{tg:app:m=gpt-4}");
        assert_eq!(tag("app", Kind::Model, ""), "{tg:app:m=}");
        assert_eq!(tag("app", Kind::Model, "a:b"), "{tg:app:m=a:b}");
        assert_eq!(tag("app", Kind::Bucket, "a:b"), "{tg:app:b=a:b}");
        let braces = tag("app", Kind::Model, "{x}");
        assert!(braces.starts_with("{tg:app:m#") && braces.len() == "{tg:app:m#}".len() + 40);
        assert_eq!(braces[1..].find(['{', '}']), Some(braces.len() - 2));
        let long = "x".repeat(1 << 20);
        assert_eq!(tag("app", Kind::Model, &long).len(), braces.len());
        assert_ne!(tag("app", Kind::Model, &long), braces);
    }

    #[test]
    fn bad_namespaces_are_refused() {
        for ns in ["", "a:b", "{a", "b}", &"n".repeat(65)] {
            assert!(check_namespace(ns).is_err(), "{ns:?}");
        }
        assert!(check_namespace("myapp").is_ok());
    }
}
